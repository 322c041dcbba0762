"""Command line for a trained speech model, without Ray:

    python -m gfssm.tasks.asr.cli transcribe MODEL_DIR audio/ more.wav --out out.jsonl
    python -m gfssm.tasks.asr.cli evaluate MODEL_DIR eval/librivox.jsonl eval/asterisk.jsonl

Greedy decoding unless ``--beam`` (with optional ``--lexicon`` and ``--kenlm``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from gfssm.tasks.asr.decoding import BeamSearchConfig, BeamSearchDecoder
from gfssm.tasks.asr.longform import ChunkingConfig
from gfssm.tasks.asr.text import CharVocabulary
from gfssm.tasks.asr.transcribe import evaluate_manifest, load_recognizer, transcribe


def add_decoding_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model directory (gfssm.json + model.pt)")
    p.add_argument("--beam", type=int, default=0, help="beam size (0: greedy)")
    p.add_argument("--lexicon", default=None, help="lexicon file (word w o r d |)")
    p.add_argument("--kenlm", default=None, help="KenLM model (ARPA or binary); needs --lexicon")
    p.add_argument("--lm-weight", type=float, default=1.0)
    p.add_argument("--word-score", type=float, default=0.0)
    p.add_argument("--chunk-seconds", type=float, default=20.0)
    p.add_argument("--context-seconds", type=float, default=2.0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")


def decoder_from(args: argparse.Namespace, frame_seconds: float) -> BeamSearchDecoder | None:
    if not args.beam:
        if args.lexicon or args.kenlm:
            raise SystemExit("--lexicon/--kenlm need beam search: give --beam N")
        return None
    config = BeamSearchConfig(
        beam_size=args.beam,
        lexicon=args.lexicon,
        kenlm=args.kenlm,
        lm_weight=args.lm_weight,
        word_score=args.word_score,
    )
    return BeamSearchDecoder(CharVocabulary(), config, frame_seconds)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gfssm.tasks.asr.cli",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("transcribe", help="audio files, folders, list files or manifests")
    add_decoding_options(t)
    t.add_argument("inputs", nargs="+")
    t.add_argument("--out", required=True, help="JSONL output (resumed if it exists)")
    t.add_argument("--raw-sample-rate", type=int, default=None, help="rate of .raw/.pcm files")
    e = sub.add_parser("evaluate", help="CER/WER on labelled data")
    add_decoding_options(e)
    e.add_argument("data", nargs="+", help="manifests, LibriSpeech folders or Common Voice TSVs")
    e.add_argument("--per-utterance", default=None, help="folder for per-utterance JSONL rows")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_recognizer(args.model)
    decoder = decoder_from(args, model.frame_seconds)
    chunking = ChunkingConfig(args.chunk_seconds, args.context_seconds)
    if args.command == "transcribe":
        summary = transcribe(
            model,
            args.inputs,
            args.out,
            decoder=decoder,
            chunking=chunking,
            raw_sample_rate=args.raw_sample_rate,
        )
        print(
            json.dumps(
                {
                    "written": summary.written,
                    "skipped": summary.skipped,
                    "failed": [f.to_json() for f in summary.failed],
                    "real_time_factor": round(summary.real_time_factor, 4),
                },
                indent=2,
            )
        )
        return 1 if summary.failed else 0
    results = {}
    for data in args.data:
        rows = None
        if args.per_utterance:
            rows = Path(args.per_utterance) / f"{Path(data).stem}.jsonl"
        results[data] = evaluate_manifest(
            model, data, decoder=decoder, chunking=chunking, out_jsonl=rows
        )
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
