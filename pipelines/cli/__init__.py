"""The ``gfssm`` command line: one module per command, each with its parser and handler.

``train``, ``tune``, ``submit``, ``jobs``, ``runs`` and ``configs`` are the pipelines' own;
``score``, ``transcribe``, ``eval`` and ``data`` list what the installed tasks offer
(:meth:`gfssm.tasks.Task.commands`). User errors are caught here, once: one line
``gfssm CMD: error: ...``, exit code 2, no traceback (``--debug`` or ``GFSSM_DEBUG=1`` shows
it). Ctrl-C ends any command with exit code 130.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import gfssm
from gfssm.pipelines.cli import (
    configs,
    data,
    embed,
    eval,
    jobs,
    runs,
    score,
    study,
    submit,
    train,
    transcribe,
    tune,
)
from gfssm.pipelines.errors import GFSSMUserError
from gfssm.pipelines.quiet import quiet_third_party

DEBUG_ENV = "GFSSM_DEBUG"
COMMANDS = (train, tune, study, score, embed, transcribe, eval, submit, jobs, runs, data, configs)

EPILOG = """examples:
  gfssm train dna                                 # quickstart on the bundled E. coli genome
  gfssm train dna task.fasta=my_genome.fa.gz train.steps=200
  gfssm train dna --local train.time_budget_minutes=10
  gfssm tune dna tune.num_samples=4
  gfssm study mqar-cpu                            # GFSSM vs Mamba-2 vs a Transformer
  gfssm score genome --model RUN_ID --fasta genome.fa --out scores/
  gfssm embed --model RUN_ID --fasta genome.fa --bed regions.bed --pool mean --window 1000 --out emb/
  gfssm submit --address http://HEAD:8265 -- gfssm train dna --config small
  gfssm runs list

Paths are taken from the folder you run gfssm in. Ray: RAY_ADDRESS (or --address) selects a
cluster, else a local Ray starts (dashboard on 127.0.0.1). MLflow: --tracking-uri or
MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db. --debug shows tracebacks.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gfssm",
        description="GFSSM pipelines: train, tune, score and submit on Ray; runs in MLflow.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"gfssm {gfssm.__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="gfssm_command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.add(sub)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    from gfssm.config import ConfigError
    from gfssm.tasks.jobs import TaskInputError

    return (GFSSMUserError, TaskInputError, ConfigError)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    if not debug:
        quiet_third_party()
    parser = build_parser()
    # key=value overrides may come before or after options, which argparse's positionals
    # alone do not allow: collect the leftovers that look like overrides.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    name = " ".join(filter(None, [args.gfssm_command, getattr(args, "what", None)]))
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print(f"gfssm {name}: interrupted", file=sys.stderr)
        return 130
    except _user_errors() as err:
        if debug:
            raise
        text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
        print(f"gfssm {name}: error: {text}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
