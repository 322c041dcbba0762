"""Word-time accuracy of speech transcription against known word boundaries, over up to an
hour of audio: greedy and beam decoding, for each model given (a bidirectional model is
decoded in overlapping windows, a causal one streams with its carried state).

    python tests/benchmarks/asr_word_times.py --model MODEL_DIR [--model CAUSAL_DIR] \
        --minutes 60 --seed 0 [--kenlm char6.arpa --lm-weight 0.5]

The audio is built by :mod:`gfssm.tasks.asr.word_truth` (words spoken one by one by
espeak-ng, trimmed at a fixed energy threshold, joined with known gaps and pauses) and
decoded through :func:`gfssm.tasks.asr.transcribe.transcribe_batch`, the path `gfssm
transcribe` takes, so the times scored are the ones users get. Only exactly recognised
words are timed in the first table (recall says how many); the second also times the
misspelt words the alignment pairs one to one with a true word. Errors are decoded minus
true times in ms; the first/last columns are the median |error| of the words in the first
and last minute; drift = last - first (goal: median under 40 ms, drift at most 20 ms).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import torch

from gfssm.tasks.asr.decoding import BeamSearchConfig, BeamSearchDecoder
from gfssm.tasks.asr.text import CharVocabulary
from gfssm.tasks.asr.transcribe import TranscriptionResult, load_recognizer, transcribe_batch
from gfssm.tasks.asr.word_truth import (
    DEFAULT_WORDS,
    TimingReport,
    TruthConfig,
    build_truth_audio,
    score_word_times,
)

COLUMNS = (
    ("recall", "recall", "{:.1%}"),
    ("timed", "timed", "{:.0f}"),
    ("start_median_ms", "start med", "{:.0f}"),
    ("end_median_ms", "end med", "{:.0f}"),
    ("start_p90_ms", "start p90", "{:.0f}"),
    ("end_p90_ms", "end p90", "{:.0f}"),
    ("start_bias_ms", "start bias", "{:+.0f}"),
    ("end_bias_ms", "end bias", "{:+.0f}"),
    ("first_window_ms", "first min", "{:.0f}"),
    ("last_window_ms", "last min", "{:.0f}"),
    ("drift_ms", "drift", "{:+.0f}"),
    ("rtf", "RTF", "{:.4f}"),
)


def decoders(args: argparse.Namespace, frame_seconds: float) -> dict[str, BeamSearchDecoder | None]:
    """greedy, and beam search (with the character LM if one is given), as `gfssm
    transcribe --beam` builds it."""
    beam = BeamSearchConfig(beam_size=args.beam, kenlm=args.kenlm, lm_weight=args.lm_weight)
    name = f"beam {args.beam}" + (" + LM" if args.kenlm else "")
    return {"greedy": None, name: BeamSearchDecoder(CharVocabulary(), beam, frame_seconds)}


def run_one(model, wav: Path, decoder) -> tuple[TranscriptionResult, float]:
    start = time.perf_counter()
    (result,) = transcribe_batch(model, [wav], decoder=decoder)
    if not isinstance(result, TranscriptionResult):
        raise RuntimeError(f"{wav}: {result.error}")
    return result, time.perf_counter() - start


def table(rows: list[tuple[str, dict[str, float]]]) -> str:
    head = ["mode"] + [title for _, title, _ in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for mode, values in rows:
        cells = [
            "n/a" if math.isnan(values[key]) else fmt.format(values[key]) for key, _, fmt in COLUMNS
        ]
        lines.append("| " + " | ".join([mode, *cells]) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", action="append", required=True, help="model folder (repeat)")
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--beam", type=int, default=32)
    p.add_argument("--kenlm", default=None, help="character LM (ARPA) for beam search")
    p.add_argument("--lm-weight", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--audio-dir", default=None, help="keep the built audio here (else a temp)")
    p.add_argument("--json", default=None, help="also write the rows as JSON")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.audio_dir or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        wav = folder / f"word_truth_{args.minutes:g}min_seed{args.seed}.wav"
        built = time.perf_counter()
        truth = build_truth_audio(wav, args.minutes * 60, TruthConfig(seed=args.seed))
        built = time.perf_counter() - built
        duration = args.minutes * 60
        print(
            f"{wav.name}: {duration / 60:g} min, {len(truth)} words "
            f"({len(DEFAULT_WORDS)} distinct), built in {built:.0f} s"
        )
        exact_rows: list[tuple[str, dict[str, float]]] = []
        aligned_rows: list[tuple[str, dict[str, float]]] = []
        for model_dir in args.model:
            model = load_recognizer(model_dir).eval()
            kind = "bidirectional" if model.bidirectional else "causal"
            for name, decoder in decoders(args, model.frame_seconds).items():
                result, seconds = run_one(model, wav, decoder)
                for loose, rows in ((False, exact_rows), (True, aligned_rows)):
                    report: TimingReport = score_word_times(
                        truth, result.words, duration, substitutions=loose
                    )
                    rows.append(
                        (f"{kind}, {name}", {**report.summary(), "rtf": seconds / duration})
                    )
                print(f"  {kind}, {name}: {len(result.words)} words decoded in {seconds:.0f} s")
    print("\nExactly recognised words:")
    print(table(exact_rows))
    print("\nAll words aligned one to one with a true word (misspelt ones too):")
    print(table(aligned_rows))
    if args.json:
        out = {"exact": dict(exact_rows), "aligned": dict(aligned_rows)}
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
