"""A synthetic training corpus: real English sentences read by speech synthesisers.

Each utterance draws an engine (espeak-ng, flite, festival: :mod:`gfssm.tasks.asr.voices`), a
voice, a speed, a pitch and a gap between words from a seeded generator, and optionally what a
room, a microphone and a phone line do to it (:mod:`gfssm.tasks.asr.acoustics`), so the same
seed gives the same corpus. Whole voices are held out for validation (espeak variants, and
whole speakers of the other engines), with their own sentences too, so the validation score
measures how well the model generalises to voices it never heard, not memory. Audio is
written as 16 kHz 16-bit WAV with a JSONL manifest per split; an interrupted run resumes where
it stopped (finished utterances are kept), and progress is shown.

    python -m gfssm.tasks.asr.synth --text /usr/share/games/fortunes/* --out corpus \
        --engines espeak=2 flite festival --reverb-prob 0.3 --noise-prob 0.3 --seed 0
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import soundfile
import torch
from tqdm import tqdm

from gfssm.tasks.asr.acoustics import AcousticsConfig, AcousticsValueError, apply_acoustics
from gfssm.tasks.asr.audio import TARGET_RATE, resample
from gfssm.tasks.asr.corpus_plan import ENGLISH_ACCENTS, Job, SynthConfig, plan_jobs
from gfssm.tasks.asr.sentences import collect_sentences
from gfssm.tasks.asr.voices import (
    ENGINES,
    SynthesisError,
    espeak_binary,
    installed_voices,
    speak,
)

__all__ = [
    "ENGLISH_ACCENTS",
    "Job",
    "SynthConfig",
    "build_corpus",
    "espeak_binary",
    "plan_jobs",
    "synthesise",
]

log = logging.getLogger(__name__)


def synthesise(job: Job, path: Path) -> float:
    """Speak ``job`` into a 16 kHz 16-bit WAV at ``path``, through its acoustics if any; its
    duration (s)."""
    settings = dict(speed_wpm=job.speed, pitch=job.pitch, word_gap=job.word_gap, accent=job.accent)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            wave, rate = speak(job.engine, job.variant, job.spoken, Path(tmp) / "a.wav", **settings)
        except SynthesisError:
            if job.engine == "espeak":
                raise
            # festival's front end crashes on rare punctuation we have not seen yet: the bare
            # words (the transcript) always read, and the choice is the same on every run.
            wave, rate = speak(job.engine, job.variant, job.text, Path(tmp) / "b.wav", **settings)
    audio = resample(torch.from_numpy(wave), rate, TARGET_RATE).clamp(-1.0, 1.0)
    if job.acoustics is not None:
        audio = apply_acoustics(audio, TARGET_RATE, job.acoustics)
    audio = audio.numpy()
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
        "voice": job.voice,
        "engine": job.engine,
        "speed": job.speed,
        "pitch": job.pitch,
        "word_gap": job.word_gap,
        **({"acoustics": job.acoustics.describe()} if job.acoustics else {}),
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
    sentences = collect_sentences(text_files)
    voices = {}
    for engine, _ in config.engines:
        if engine == "espeak" and config.variants:
            voices[engine] = list(config.variants)
        else:
            voices[engine] = installed_voices(engine)
    plan, split_info = plan_jobs(config, sentences, voices)
    (out / "audio").mkdir(parents=True, exist_ok=True)  # only once the plan is sound
    summary = {"config": json.loads(json.dumps(asdict(config))), **split_info}
    meta = out / "corpus.json"
    if meta.is_file() and json.loads(meta.read_text())["config"] != summary["config"]:
        raise ValueError(f"{meta}: {out} holds a corpus made with other settings; use a new --out")
    meta.write_text(json.dumps(summary, indent=2))
    manifests = {split: out / f"{split}.jsonl" for split in ("train", "valid")}
    done = {k: v for m in manifests.values() for k, v in read_done(m, out).items()}
    todo = [job for job in plan if job.id not in done]
    handles = {split: path.open("a", encoding="utf-8") for split, path in manifests.items()}
    # Each worker thread runs its own small signal chain: torch's intra-op threads on top of
    # them only contend (seconds per utterance instead of milliseconds on 2 cores).
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
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
        torch.set_num_threads(torch_threads)
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


# The command-line flag of each AcousticsConfig field.
ACOUSTICS_FLAGS = {
    "speed_factor": "--speed-factor",
    "reverb_prob": "--reverb-prob",
    "reverb_rt60": "--reverb-rt60",
    "noise_prob": "--noise-prob",
    "noise_snr_db": "--noise-snr",
    "telephone_prob": "--telephone-prob",
    "gain_db": "--gain-db",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gfssm data synth",
        description="Synthesise a speech corpus with espeak-ng, flite and festival.",
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
        "--engines",
        nargs="+",
        default=["espeak"],
        metavar="ENGINE[=WEIGHT]",
        help=f"synthesisers to mix, with relative weights ({', '.join(ENGINES)}; default: espeak)",
    )
    p.add_argument(
        "--valid-speakers",
        type=int,
        default=d.valid_speakers,
        help="speakers of the non-espeak engines held out for validation",
    )
    a = AcousticsConfig()
    room = p.add_argument_group("acoustics (training audio; all off by default)")

    def float_range(flag: str, default: tuple[float, float], help: str) -> None:
        room.add_argument(
            flag, nargs=2, type=float, default=list(default), metavar=("MIN", "MAX"), help=help
        )

    def chance(flag: str, default: float, help: str) -> None:
        room.add_argument(flag, type=float, default=default, help=help)

    float_range(
        ACOUSTICS_FLAGS["speed_factor"], a.speed_factor, "playback speed range, e.g. 0.9 1.1"
    )
    chance(ACOUSTICS_FLAGS["reverb_prob"], a.reverb_prob, "chance of a simulated room")
    float_range(ACOUSTICS_FLAGS["reverb_rt60"], a.reverb_rt60, "room reverberation time range (s)")
    chance(ACOUSTICS_FLAGS["noise_prob"], a.noise_prob, "chance of white, pink or brown noise")
    float_range(ACOUSTICS_FLAGS["noise_snr_db"], a.noise_snr_db, "signal-to-noise ratio range (dB)")
    chance(
        ACOUSTICS_FLAGS["telephone_prob"],
        a.telephone_prob,
        "chance of an 8 kHz phone line (300-3400 Hz, mu-law/A-law/PCM)",
    )
    float_range(
        ACOUSTICS_FLAGS["gain_db"], a.gain_db, "level change range (dB; clips at full scale)"
    )
    room.add_argument(
        "--acoustics-on-valid",
        action="store_true",
        help="degrade the validation audio too (default: clean)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="synthesiser processes at once (default: the CPU count)",
    )


def parse_engines(values: Sequence[str]) -> tuple[tuple[str, float], ...]:
    """``["espeak=2", "flite"]`` -> (("espeak", 2.0), ("flite", 1.0))."""
    engines = {}
    for value in values:
        name, _, weight = value.partition("=")
        if name not in ENGINES:
            raise ValueError(f"--engines {value}: unknown engine; expected {', '.join(ENGINES)}")
        try:
            engines[name] = float(weight) if weight else 1.0
        except ValueError:
            raise ValueError(f"--engines {value}: expected ENGINE=WEIGHT, e.g. {name}=2") from None
        if not engines[name] > 0:
            raise ValueError(f"--engines {value}: the weight must be positive")
    return tuple(engines.items())


def acoustics_from_args(args: argparse.Namespace) -> AcousticsConfig:
    """The acoustics options; a bad value is reported by the flag the user typed."""
    try:
        return AcousticsConfig(
            speed_factor=tuple(args.speed_factor),
            reverb_prob=args.reverb_prob,
            reverb_rt60=tuple(args.reverb_rt60),
            noise_prob=args.noise_prob,
            noise_snr_db=tuple(args.noise_snr),
            telephone_prob=args.telephone_prob,
            gain_db=tuple(args.gain_db),
        )
    except AcousticsValueError as err:
        values = err.value if isinstance(err.value, tuple) else (err.value,)
        shown = " ".join(f"{v:g}" for v in values)
        raise ValueError(f"{ACOUSTICS_FLAGS[err.field]} {shown}: {err.problem}") from None


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
        engines=parse_engines(args.engines),
        valid_speakers=args.valid_speakers,
        acoustics=acoustics_from_args(args),
        acoustics_on_valid=args.acoustics_on_valid,
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
                "valid_voices": summary["valid_voices"],
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
