"""The speech commands: ``gfssm transcribe``, ``gfssm eval asr`` and ``gfssm data synth|
manifest|fetch-speech`` (thin wrappers over :mod:`gfssm.tasks.asr`)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import gfssm.tasks.asr  # noqa: F401  (ImportError here hides the commands: task not installed)
from gfssm.pipelines.dna_commands import _connect, _pool, local_model
from gfssm.pipelines.speech_decoding import DecodingOptions


def transcribe_command(args: argparse.Namespace, log: Callable[[str], None]) -> int:
    from gfssm.pipelines.speech import transcribe

    out = Path(args.out)
    decoding = DecodingOptions.from_args(args)
    with local_model(args.model, args.tracking_uri) as model_dir:
        summary = transcribe(
            model_dir,
            args.inputs,
            out,
            batch_files=args.batch_files,
            decoding=decoding,
            pool=_pool(args),
            log=log,
            connect=lambda: _connect(args, log),
        )
    rtf = summary["wall_seconds"] / summary["audio_seconds"] if summary["audio_seconds"] else 0
    log(
        f"{summary['written']} transcripts in {out} ({summary['audio_seconds']:.1f} s of audio, "
        f"real-time factor {rtf:.3f})"
    )
    if summary["failed"]:
        log(f"{summary['failed']} file(s) failed: see {summary['failed_path']}")
    return 0 if summary["written"] or not summary["failed"] else 1


def eval_asr_command(args: argparse.Namespace, log: Callable[[str], None]) -> int:
    from gfssm.pipelines.speech import evaluate

    decoding = DecodingOptions.from_args(args)
    with local_model(args.model, args.tracking_uri) as model_dir:
        summary = evaluate(
            model_dir,
            args.manifest,
            out_jsonl=Path(args.out) if args.out else None,
            batch_files=args.batch_files,
            decoding=decoding,
            pool=_pool(args),
            log=log,
            connect=lambda: _connect(args, log),
        )
    log(
        f"WER {summary['wer']:.2%}  CER {summary['cer']:.2%}  on {int(summary['utterances'])} "
        f"utterances ({int(summary['reference_words'])} words)"
        + (f"; {int(summary['failed'])} could not be read" if summary["failed"] else "")
    )
    log(json.dumps(summary))
    return 0


# gfssm data ---------------------------------------------------------------------------
def _manifest(args: argparse.Namespace, log) -> int:
    from gfssm.tasks.asr.manifests import read_dataset, write_manifest

    utts = read_dataset(args.source)
    path = write_manifest(utts, args.out)
    hours = sum(u.duration for u in utts) / 3600
    log(f"{path}: {len(utts)} utterances, {hours:.2f} h")
    return 0


def _fetch(args: argparse.Namespace, log) -> int:
    from gfssm.tasks.asr.realdata import main

    return main(["--out", args.out, *(["--sets", *args.sets] if args.sets else [])])


def add_data_commands(sub) -> None:
    """``gfssm data`` subcommands for speech preparation."""
    # Listed for --help only: `gfssm data synth ...` goes straight to the corpus builder.
    sub.add_parser("synth", help="synthesise a speech corpus with espeak-ng (see --help)")
    p = sub.add_parser(
        "manifest",
        help="JSONL manifest of a LibriSpeech folder, a Common "
        "Voice TSV or another manifest (durations filled in)",
    )
    p.add_argument("source")
    p.add_argument("--out", required=True)
    p.set_defaults(handler=_manifest)
    p = sub.add_parser(
        "fetch-speech",
        help="fetch real evaluation recordings and fortune "
        "texts from public packages (apt-get download / pip download)",
    )
    p.add_argument("--out", required=True)
    p.add_argument("--sets", nargs="+", choices=["pocketsphinx", "asterisk", "fortunes"])
    p.set_defaults(handler=_fetch)
