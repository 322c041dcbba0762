"""The task-specific commands, routed to the module of each task; errors that the tasks
raise for bad input (files, records, names) are shown as one clear line."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable

from gfssm.pipelines.errors import GFSSMUserError

# What the task plugins raise for bad input (their messages name file, line and fix).
_INPUT_ERRORS = (ValueError, KeyError, FileNotFoundError, NotADirectoryError, PermissionError)


class InputError(GFSSMUserError):
    pass


def _user_errors(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except GFSSMUserError:
            raise
        except _INPUT_ERRORS as err:
            text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
            if "contig_aliases=" in text:
                text += " (on the command line: --alias NAME_IN_FILE=FASTA_CONTIG)"
            raise InputError(text) from err

    return wrapper


def usage_hint(task_name: str, run_id: str) -> str | None:
    if task_name == "dna":
        from gfssm.tasks.dna import bundled_genome

        return (
            f"gfssm score genome --model {run_id} --fasta {bundled_genome()} --out scores/ "
            f"--segment 1000000 --warmup 2000 --actors 2"
        )
    if task_name == "asr":
        return f"gfssm transcribe --model {run_id} AUDIO.wav ... --out transcripts.jsonl"
    return None


@_user_errors
def score_genome_command(args: argparse.Namespace, log) -> int:
    from gfssm.pipelines.dna_commands import score_genome_command as run

    return run(args, log)


@_user_errors
def score_variants_command(args: argparse.Namespace, log) -> int:
    from gfssm.pipelines.dna_commands import score_variants_command as run

    return run(args, log)


@_user_errors
def transcribe_command(args: argparse.Namespace, log) -> int:
    from gfssm.pipelines.speech_commands import transcribe_command as run

    return run(args, log)


@_user_errors
def eval_asr_command(args: argparse.Namespace, log) -> int:
    from gfssm.pipelines.speech_commands import eval_asr_command as run

    return run(args, log)


def add_score_options(genome: argparse.ArgumentParser, variants: argparse.ArgumentParser) -> None:
    from gfssm.pipelines.dna_commands import add_score_options as add

    add(genome, variants)


def add_speech_options(transcribe: argparse.ArgumentParser, evaluate: argparse.ArgumentParser):
    from gfssm.pipelines.dna_commands import add_pool_options
    from gfssm.pipelines.speech_decoding import add_decoding_options

    for p in (transcribe, evaluate):
        add_pool_options(p)
        add_decoding_options(p)


def add_data_commands(parser: argparse.ArgumentParser) -> None:
    """``gfssm data ...``: preparation steps of every task."""
    sub = parser.add_subparsers(dest="what", required=True, metavar="STEP")
    from gfssm.pipelines.dna_commands import add_data_commands as add_dna

    add_dna(sub)
    try:
        from gfssm.pipelines.speech_commands import add_data_commands as add_speech
    except ImportError:  # the speech task is not installed
        add_speech = None
    if add_speech is not None:
        add_speech(sub)
    for name, choice in sub.choices.items():
        handler = choice.get_default("handler")
        if handler is not None:
            choice.set_defaults(handler=_data_handler(handler), data_step=name)


def _data_handler(step: Callable) -> Callable:
    @_user_errors
    def run(args: argparse.Namespace) -> int:
        return step(args, lambda text: print(text, flush=True))

    return run
