"""A synthetic training corpus: real English sentences read by espeak-ng.

Each utterance draws an accent, a voice variant, a speed, a pitch and a gap between words
from a seeded generator, so the same seed gives the same corpus. Whole voice variants are
held out for validation (with their own sentences too), so the validation score measures
how well the model generalises to voices it never heard, not memory. Audio is written as
16 kHz 16-bit WAV with a JSONL manifest per split; an interrupted run resumes where it
stopped (finished utterances are kept), and progress is shown.

    python -m gfssm.tasks.asr.synth --text /usr/share/games/fortunes/* --out corpus \
        --train-utterances 6000 --valid-utterances 300 --seed 0
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile
import torch
from tqdm import tqdm

from gfssm.tasks.asr.audio import TARGET_RATE, resample
from gfssm.tasks.asr.sentences import Sentence, collect_sentences

log = logging.getLogger(__name__)

ENGLISH_ACCENTS = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-gb-x-rp",
    "en-029",
    "en-us-nyc",
)


@dataclass(frozen=True)
class SynthConfig:
    """How utterances vary; ranges are inclusive (speed in words per minute, pitch 0-99,
    word gap in units of 10 ms at normal speed)."""

    seed: int = 0
    train_utterances: int = 6000
    valid_utterances: int = 300
    valid_variants: int = 12
    accents: tuple[str, ...] = ENGLISH_ACCENTS
    variants: tuple[str, ...] | None = None  # None: all installed variants
    speed: tuple[int, int] = (130, 210)
    pitch: tuple[int, int] = (25, 75)
    word_gap: tuple[int, int] = (0, 4)
    valid_sentence_fraction: float = 0.1


@dataclass(frozen=True)
class Job:
    """One utterance to synthesise."""

    id: str
    split: str
    spoken: str
    text: str
    accent: str
    variant: str
    speed: int
    pitch: int
    word_gap: int


def espeak_binary() -> str:
    found = shutil.which("espeak-ng")
    if found is None:
        raise RuntimeError(
            "espeak-ng is not installed; install it (Debian/Ubuntu: apt-get install espeak-ng)"
        )
    return found


def installed_variants() -> list[str]:
    """Voice variants espeak-ng offers (``!v/NAME`` in ``--voices=variant``), sorted."""
    listing = subprocess.run(
        [espeak_binary(), "--voices=variant"], capture_output=True, text=True, check=True
    ).stdout
    names = [line.split("!v/")[1].split()[0] for line in listing.splitlines() if "!v/" in line]
    return sorted(set(names))


def split_voices(config: SynthConfig, variants: Sequence[str]) -> tuple[list[str], list[str]]:
    """(training variants, held-out validation variants) drawn from the seed."""
    if config.valid_variants >= len(variants):
        raise ValueError(
            f"valid_variants={config.valid_variants} must leave some of the "
            f"{len(variants)} variants for training"
        )
    rng = np.random.default_rng([config.seed, 1])
    held = set(rng.choice(sorted(variants), size=config.valid_variants, replace=False).tolist())
    return sorted(set(variants) - held), sorted(held)


def plan_jobs(
    config: SynthConfig, sentences: Sequence[Sentence], variants: Sequence[str]
) -> tuple[list[Job], dict]:
    """Every utterance of the corpus, fixed by the seed; plus a description of the split."""
    if len(sentences) < 20:
        raise ValueError(f"only {len(sentences)} usable sentences; give more text")
    train_variants, valid_variants = split_voices(config, variants)
    rng = np.random.default_rng([config.seed, 2])
    order = rng.permutation(len(sentences))
    n_valid_sent = max(1, int(len(sentences) * config.valid_sentence_fraction))
    pools = {"valid": order[:n_valid_sent], "train": order[n_valid_sent:]}
    jobs = []
    for split, count, voices in (
        ("train", config.train_utterances, train_variants),
        ("valid", config.valid_utterances, valid_variants),
    ):
        srng = np.random.default_rng([config.seed, 3, int(split == "valid")])
        for i in range(count):
            pool = pools[split]
            sentence = sentences[int(pool[i % len(pool)])]
            jobs.append(
                Job(
                    id=f"{split}-{i:06d}",
                    split=split,
                    spoken=sentence.spoken,
                    text=sentence.text,
                    accent=str(srng.choice(config.accents)),
                    variant=str(srng.choice(voices)),
                    speed=int(srng.integers(config.speed[0], config.speed[1] + 1)),
                    pitch=int(srng.integers(config.pitch[0], config.pitch[1] + 1)),
                    word_gap=int(srng.integers(config.word_gap[0], config.word_gap[1] + 1)),
                )
            )
    split_info = {
        "train_variants": train_variants,
        "valid_variants": valid_variants,
        "accents": list(config.accents),
        "sentences": {"train": len(pools["train"]), "valid": len(pools["valid"])},
    }
    return jobs, split_info


def synthesise(job: Job, path: Path) -> float:
    """Speak ``job`` with espeak-ng into a 16 kHz 16-bit WAV at ``path``; its duration (s)."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "espeak.wav"
        # -w writes a correct WAV header (--stdout leaves a placeholder length); text on
        # stdin so that no sentence is taken for an option.
        cmd = [espeak_binary(), "-v", f"{job.accent}+{job.variant}", "-s", str(job.speed)]
        cmd += ["-p", str(job.pitch), "-g", str(job.word_gap), "-w", str(raw), "--stdin"]
        subprocess.run(cmd, input=job.spoken, text=True, check=True, capture_output=True)
        wave, rate = soundfile.read(raw, dtype="float32")
    audio = resample(torch.from_numpy(wave), rate, TARGET_RATE).clamp(-1.0, 1.0).numpy()
    partial = path.with_suffix(".partial.wav")
    soundfile.write(partial, audio, TARGET_RATE, subtype="PCM_16")
    os.replace(partial, path)  # a file under its final name is always complete
    return len(audio) / TARGET_RATE


def manifest_row(job: Job, path: Path, duration: float, root: Path) -> dict:
    return {
        "audio_filepath": str(path.relative_to(root)),
        "duration": round(duration, 4),
        "text": job.text,
        "id": job.id,
        "voice": f"{job.accent}+{job.variant}",
        "speed": job.speed,
        "pitch": job.pitch,
        "word_gap": job.word_gap,
    }


def read_done(manifest: Path, root: Path) -> dict[str, dict]:
    """Rows already written (an interrupted last line is ignored) whose audio exists."""
    done: dict[str, dict] = {}
    if manifest.is_file():
        for line in manifest.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if (root / row["audio_filepath"]).is_file():
                done[row["id"]] = row
    return done


def build_corpus(
    text_files: Sequence[str | Path], out: str | Path, config: SynthConfig, *, jobs: int = 2
) -> dict:
    """Synthesise the corpus into ``out`` (``train.jsonl``, ``valid.jsonl``, ``audio/``,
    ``corpus.json``); resumes a previous run with the same settings. Returns the summary."""
    out = Path(out)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    sentences = collect_sentences(text_files)
    variants = list(config.variants) if config.variants else installed_variants()
    plan, split_info = plan_jobs(config, sentences, variants)
    summary = {"config": json.loads(json.dumps(asdict(config))), **split_info}
    meta = out / "corpus.json"
    if meta.is_file() and json.loads(meta.read_text())["config"] != summary["config"]:
        raise ValueError(f"{meta}: {out} holds a corpus made with other settings; use a new --out")
    meta.write_text(json.dumps(summary, indent=2))
    manifests = {split: out / f"{split}.jsonl" for split in ("train", "valid")}
    done = {k: v for m in manifests.values() for k, v in read_done(m, out).items()}
    todo = [job for job in plan if job.id not in done]
    handles = {split: path.open("a", encoding="utf-8") for split, path in manifests.items()}
    try:
        with (
            ThreadPoolExecutor(max(1, jobs)) as pool,
            tqdm(
                total=len(plan), initial=len(plan) - len(todo), desc="synthesising", unit="utt"
            ) as progress,
        ):
            paths = [out / "audio" / job.split / f"{job.id}.wav" for job in todo]
            for path in {p.parent for p in paths}:
                path.mkdir(parents=True, exist_ok=True)
            for job, path, duration in zip(todo, paths, pool.map(synthesise, todo, paths)):
                row = manifest_row(job, path, duration, out)
                handles[job.split].write(json.dumps(row) + "\n")
                handles[job.split].flush()
                done[job.id] = row
                progress.update()
    finally:
        for handle in handles.values():
            handle.close()
    for split, path in manifests.items():  # final order is the plan's, whatever finished first
        rows = sorted(
            (r for r in done.values() if r["id"].startswith(split)), key=lambda r: r["id"]
        )
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        os.replace(tmp, path)
    hours = {
        s: sum(r["duration"] for r in done.values() if r["id"].startswith(s)) / 3600
        for s in manifests
    }
    summary["hours"] = hours
    meta.write_text(json.dumps(summary, indent=2))
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gfssm data synth", description="Synthesise a speech corpus with espeak-ng."
    )
    add_synth_arguments(p)
    return p


def add_synth_arguments(p: argparse.ArgumentParser) -> None:
    """The corpus builder's options (``gfssm data synth`` and ``python -m`` this module)."""
    d = SynthConfig()
    p.add_argument(
        "--text",
        nargs="+",
        required=True,
        help="fortune or text files of sentences, or folders of them",
    )
    p.add_argument("--out", required=True, help="output folder (resumed if it exists)")
    p.add_argument("--train-utterances", type=int, default=d.train_utterances)
    p.add_argument("--valid-utterances", type=int, default=d.valid_utterances)
    p.add_argument(
        "--valid-variants",
        type=int,
        default=d.valid_variants,
        help="voice variants held out for validation",
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--accents", nargs="+", default=list(d.accents))
    p.add_argument("--variants", nargs="+", default=None, help="default: all installed")
    p.add_argument("--speed", nargs=2, type=int, default=list(d.speed), metavar=("MIN", "MAX"))
    p.add_argument("--pitch", nargs=2, type=int, default=list(d.pitch), metavar=("MIN", "MAX"))
    p.add_argument(
        "--word-gap", nargs=2, type=int, default=list(d.word_gap), metavar=("MIN", "MAX")
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="espeak-ng processes at once (default: the CPU count)",
    )


def config_from_args(args: argparse.Namespace) -> SynthConfig:
    return SynthConfig(
        seed=args.seed,
        train_utterances=args.train_utterances,
        valid_utterances=args.valid_utterances,
        valid_variants=args.valid_variants,
        accents=tuple(args.accents),
        variants=tuple(args.variants) if args.variants else None,
        speed=tuple(args.speed),
        pitch=tuple(args.pitch),
        word_gap=tuple(args.word_gap),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    summary = build_corpus(args.text, args.out, config, jobs=args.jobs)
    print(
        json.dumps(
            {
                "out": args.out,
                "hours": summary["hours"],
                "valid_variants": summary["valid_variants"],
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
