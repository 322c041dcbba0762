"""Real-time factor of speech transcription on this machine, batched against one file at a
time, and the memory of long-audio transcription against its length; all in this process.

    python tests/benchmarks/asr_rtf.py [--model MODEL_DIR] [--copies 8] [--threads 2]

Without ``--model`` a randomly initialised model of the task's default size is used (speed
does not depend on the weights). The inputs are the committed real recordings of
``tests/data/asr``, copied ``--copies`` times. RTF = processing seconds per second of audio.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

import soundfile
import torch

from gfssm.tasks.asr.audio import read_audio
from gfssm.tasks.asr.longform import ChunkingConfig
from gfssm.tasks.asr.task import AsrSettings, AsrTask
from gfssm.tasks.asr.transcribe import load_recognizer, transcribe, transcribe_file

DATA = Path(__file__).resolve().parents[1] / "data" / "asr"


def real_files(folder: Path, copies: int) -> list[Path]:
    sources = sorted((DATA / "pocketsphinx").glob("*0.wav")) + sorted(
        (DATA / "asterisk").glob("*.wav")
    )
    sources.append(DATA / "pocketsphinx" / "cards-001.wav")
    out = []
    for k in range(copies):
        for src in sources:
            dst = folder / f"{k:03d}_{src.name}"
            shutil.copy(src, dst)
            out.append(dst)
    return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default=None)
    p.add_argument("--copies", type=int, default=8)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--long-minutes", type=float, nargs="+", default=[2.0, 8.0])
    p.add_argument("--json", default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model:
        model = load_recognizer(args.model)
    else:
        task, settings = AsrTask(), AsrSettings()
        model = task.build_model(task.model_config("gfssm", {}, settings), settings).eval()
    report: dict[str, float] = {"threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        files = real_files(folder, args.copies)
        audio_seconds = sum(soundfile.info(f).duration for f in files)
        transcribe(model, files[:3], Path(tmp) / "warm.jsonl", progress=False)  # warm-up
        # Long audio first, shortest first: the process's peak memory must not grow with
        # the length (constant-memory chunking), so the peaks printed should be equal.
        speech = torch.cat([read_audio(f) for f in files[: len(files) // args.copies]])
        for minutes in sorted(args.long_minutes):
            reps = int(minutes * 60 * 16_000 / speech.shape[0]) + 1
            path = Path(tmp) / f"long_{minutes}.wav"
            with soundfile.SoundFile(path, "w", 16_000, 1, subtype="PCM_16") as sink:
                for _ in range(reps):  # block by block: making the file costs no memory
                    sink.write(speech.numpy())
            start = time.perf_counter()
            transcribe_file(model, path, chunking=ChunkingConfig(20.0, 2.0))
            took = time.perf_counter() - start
            duration = soundfile.info(path).duration
            report[f"long_{minutes}min_rtf"] = round(took / duration, 4)
            report[f"long_{minutes}min_peak_rss_mb"] = round(peak_rss_mb(), 1)
            path.unlink()
        start = time.perf_counter()
        summary = transcribe(model, files, Path(tmp) / "batched.jsonl", progress=False)
        batched = time.perf_counter() - start
        start = time.perf_counter()
        for f in files:
            transcribe_file(model, f)
        single = time.perf_counter() - start
        report.update(
            files=len(files),
            audio_seconds=round(audio_seconds, 1),
            rtf_batched=round(batched / audio_seconds, 4),
            rtf_one_file_at_a_time=round(single / audio_seconds, 4),
            speedup_batched=round(single / batched, 2),
            written=summary.written,
        )
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
