"""The ``gfssm`` commands of the speech task (see :meth:`AsrTask.commands`):

- ``gfssm transcribe INPUT... --out OUT.jsonl [--format jsonl,srt,vtt,ctm]`` and ``gfssm eval asr --manifest M``: batch
  jobs over a trained model (:mod:`gfssm.tasks.asr.jobs`);
- ``gfssm data synth``, ``gfssm data manifest``, ``gfssm data fetch-speech``: data steps,
  without a model or Ray.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gfssm.tasks.asr.decoding_options import DecodingOptions, add_decoding_options
from gfssm.tasks.asr.jobs import EvalAsrJob, TranscribeJob, _check_batch_files, parse_formats
from gfssm.tasks.jobs import Log, TaskCommand, TaskInputError, resolve_path


# gfssm transcribe / gfssm eval asr --------------------------------------------------------
def add_transcribe_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="audio files, folders (searched recursively), list files (.txt/.lst: one path "
        "a line) or JSONL manifests",
    )
    parser.add_argument(
        "--out",
        required=True,
        help="JSONL output, one line per file (text, duration, words with start, end and "
        "confidence); the other formats go beside it, named after it (see --format); "
        "failures: OUT_STEM.failed.jsonl",
    )
    parser.add_argument(
        "--format",
        default="jsonl",
        metavar="LIST",
        help="what to write, a comma list from one decode (default jsonl): jsonl (OUT); srt "
        "and vtt: one SubRip/WebVTT file per audio file in the folder OUT_STEM.srt/ or "
        "OUT_STEM.vtt/, named by its path below the deepest folder holding all inputs "
        "(recordings/day1/talk.flac -> transcripts.srt/day1/talk.srt for --out "
        "transcripts.jsonl); ctm: OUT_STEM.ctm, NIST CTM (utt-id 1 start dur word "
        "confidence) of all files. A rerun with more formats reuses the finished work",
    )
    parser.add_argument(
        "--batch-files", type=int, default=16, help="files per work item (default 16)"
    )
    add_decoding_options(parser)


TRANSCRIBE_DESCRIPTION = (
    "Transcribe audio files, folders, list files or manifests with a speech model. "
    "--format jsonl,srt,vtt,ctm writes JSONL, subtitles and a CTM from one decode: with "
    "--out transcripts.jsonl, transcripts.jsonl, transcripts.srt/NAME.srt, "
    "transcripts.vtt/NAME.vtt and transcripts.ctm (NAME: the audio file's path below the "
    "deepest folder holding all inputs, without its extension). Subtitle cues hold at most "
    "2 lines of 42 characters and 7 s, and a pause over 0.7 s starts a new cue."
)


def make_transcribe_job(args: argparse.Namespace, base_dir: Path, loaded=None) -> TranscribeJob:
    from gfssm.tasks.asr.manifests import iter_audio_inputs

    inputs = []
    for value in args.inputs:
        path = Path(resolve_path(value, base_dir) or "")
        if not path.exists():
            raise TaskInputError(f"{value}: no such file or folder (looked in {path.parent})")
        inputs.append(str(path))
    utts = list(iter_audio_inputs(inputs))
    if not utts:
        raise TaskInputError(f"no audio files found in {' '.join(args.inputs)}")
    return TranscribeJob(
        utterances=utts,
        out=Path(resolve_path(args.out, base_dir) or ""),
        batch_files=_check_batch_files(args.batch_files),
        decoding=DecodingOptions.from_args(args, base_dir),
        formats=parse_formats(getattr(args, "format", "jsonl")),
    )


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--manifest",
        required=True,
        help="labelled data: a JSONL manifest, a LibriSpeech-style folder or a Common Voice TSV",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="JSONL of per-utterance results (default: MANIFEST_NAME.eval.jsonl in this folder)",
    )
    parser.add_argument(
        "--batch-files", type=int, default=16, help="utterances per work item (default 16)"
    )
    add_decoding_options(parser)


def make_eval_job(args: argparse.Namespace, base_dir: Path, loaded=None) -> EvalAsrJob:
    from gfssm.tasks.asr.manifests import read_dataset

    data = Path(resolve_path(args.manifest, base_dir) or "")
    if not data.exists():
        raise TaskInputError(f"--manifest {args.manifest}: no such file or folder")
    batch_files = _check_batch_files(args.batch_files)
    decoding = DecodingOptions.from_args(args, base_dir)
    out = args.out or f"{data.stem if data.is_file() else data.name}.eval.jsonl"
    return EvalAsrJob(
        data=str(data),
        utterances=read_dataset(data),
        out=Path(resolve_path(out, base_dir) or ""),
        batch_files=batch_files,
        decoding=decoding,
    )


def _path(value: str, base_dir: Path) -> str:
    return resolve_path(value, base_dir) or value


# gfssm data synth ---------------------------------------------------------------------
def add_synth_arguments(parser: argparse.ArgumentParser) -> None:
    from gfssm.tasks.asr.synth import add_synth_arguments as add

    add(parser)


def run_synth(args: argparse.Namespace, base_dir: Path, log: Log) -> int:
    from gfssm.tasks.asr.synth import build_corpus, config_from_args

    for name, value in (("--train-utterances", args.train_utterances), ("--jobs", args.jobs)):
        if value < 1:
            raise TaskInputError(f"{name} {value}: expected a positive number")
    texts = [_path(t, base_dir) for t in args.text]
    for given, path in zip(args.text, texts):
        if not Path(path).exists():
            raise TaskInputError(f"--text {given}: no such file or folder")
    out = _path(args.out, base_dir)
    try:
        config = config_from_args(args)
        summary = build_corpus(texts, out, config, jobs=args.jobs)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        if isinstance(err, TaskInputError):
            raise
        raise TaskInputError(str(err)) from None
    hours = summary["hours"]
    log(
        f"{out}: train.jsonl ({hours['train']:.2f} h), valid.jsonl ({hours['valid']:.2f} h, "
        f"held-out voices {', '.join(summary['valid_voices'])})"
    )
    return 0


# gfssm data manifest ------------------------------------------------------------------
def add_manifest_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source", help="a LibriSpeech-style folder, a Common Voice TSV or a JSONL manifest"
    )
    parser.add_argument("--out", required=True, help="JSONL manifest to write")


def run_manifest(args: argparse.Namespace, base_dir: Path, log: Log) -> int:
    from gfssm.tasks.asr.manifests import read_dataset, write_manifest

    source = Path(_path(args.source, base_dir))
    if not source.exists():
        raise TaskInputError(f"{args.source}: no such file or folder")
    utts = read_dataset(source)
    path = write_manifest(utts, _path(args.out, base_dir))
    hours = sum(u.duration for u in utts) / 3600
    log(f"{path}: {len(utts)} utterances, {hours:.2f} h")
    return 0


# gfssm data fetch-speech --------------------------------------------------------------
def add_fetch_arguments(parser: argparse.ArgumentParser) -> None:
    from gfssm.tasks.asr.realdata import SETS

    parser.add_argument("--out", required=True, help="folder to fetch into")
    parser.add_argument(
        "--sets",
        nargs="+",
        choices=list(SETS),
        default=list(SETS),
        help="what to fetch (default: all): real recordings from the pocketsphinx sdist "
        "(PyPI) and Debian's asterisk prompts; sentences from Debian's fortunes",
    )


def run_fetch(args: argparse.Namespace, base_dir: Path, log: Log) -> int:
    from gfssm.tasks.asr.realdata import fetch_evaluation_sets, fetch_fortunes

    out = Path(_path(args.out, base_dir))
    manifests = fetch_evaluation_sets(out, sets=args.sets)
    for name, path in manifests.items():
        log(f"{name}: {path}")
    if "fortunes" in args.sets:
        files = fetch_fortunes(out)
        log(f"fortunes: {len(files)} sentence files in {files[0].parent}")
    return 0


def asr_commands() -> list[TaskCommand]:
    return [
        TaskCommand(
            command="transcribe",
            name=None,
            help="transcribe audio files, folders, list files or manifests with a speech model",
            add_arguments=add_transcribe_arguments,
            make_job=make_transcribe_job,
            description=TRANSCRIBE_DESCRIPTION,
        ),
        TaskCommand(
            command="eval",
            name="asr",
            help="WER/CER of a speech model on labelled data",
            add_arguments=add_eval_arguments,
            make_job=make_eval_job,
        ),
        TaskCommand(
            command="data",
            name="synth",
            help="synthesise a speech corpus with espeak-ng",
            add_arguments=add_synth_arguments,
            run=run_synth,
        ),
        TaskCommand(
            command="data",
            name="manifest",
            help="JSONL manifest of a LibriSpeech folder, a Common Voice TSV or another "
            "manifest (durations filled in)",
            add_arguments=add_manifest_arguments,
            run=run_manifest,
        ),
        TaskCommand(
            command="data",
            name="fetch-speech",
            help="fetch real evaluation recordings and fortune texts from public packages "
            "(apt-get download / pip download)",
            add_arguments=add_fetch_arguments,
            run=run_fetch,
        ),
    ]
