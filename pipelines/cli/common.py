"""What several ``gfssm`` commands share: options, the task registry, user errors, output.

Ray and MLflow are imported only inside the handlers that need them, so ``gfssm --help`` and
bad-input errors answer at once.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Iterable
from pathlib import Path

from gfssm.pipelines.errors import GFSSMUserError


class UnknownTask(GFSSMUserError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def say(text: str) -> None:
    print(text, flush=True)


def closest(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean X?)`` for the nearest valid name, or nothing."""
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {found[0]!r}?)" if found else ""


def load_task(name: str):
    from gfssm.tasks.base import available_tasks, get_task

    installed = available_tasks()
    if name not in installed:
        raise UnknownTask(
            f"no task named {name!r}{closest(name, installed)}; installed tasks: "
            f"{', '.join(sorted(installed)) or 'none'}"
        )
    return get_task(name)


def all_tasks():
    """Every installed task plugin (a plugin that fails to import is skipped with a note)."""
    from gfssm.tasks.base import available_tasks, get_task

    tasks = []
    for name in sorted(available_tasks()):
        try:
            tasks.append(get_task(name))
        except Exception as err:  # a broken third-party plugin must not break every command
            print(f"gfssm: note: task plugin {name!r} could not be loaded: {err}", file=sys.stderr)
    return tasks


def task_commands(command: str):
    """``[(task, TaskCommand)]`` of every installed task for ``gfssm COMMAND``."""
    return [(task, c) for task in all_tasks() for c in task.commands() if c.command == command]


def add_tracking(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or sqlite:///./mlflow.db)",
    )


def add_ray(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address", help="Ray cluster address (default: RAY_ADDRESS or a new local Ray)"
    )


def add_batch_job_options(parser: argparse.ArgumentParser) -> None:
    """What every batch job takes besides its task's own options."""
    parser.add_argument(
        "--model",
        required=True,
        help="model or checkpoint directory, MLflow run id, runs:/RUN_ID/PATH or "
        "models:/NAME/VERSION",
    )
    pool = parser.add_argument_group("actor pool")
    pool.add_argument("--actors", type=int, default=1, help="model replicas (default 1)")
    pool.add_argument(
        "--cpus-per-actor",
        type=float,
        default=None,
        help="default: the cluster's CPUs split between the actors",
    )
    pool.add_argument(
        "--gpus-per-actor",
        type=float,
        default=None,
        help="default: 1 when the cluster has GPUs, else 0",
    )
    add_tracking(parser)
    add_ray(parser)


def add_task_subcommands(parser: argparse.ArgumentParser, command: str, metavar: str) -> None:
    """``gfssm COMMAND NAME ...``: one subparser per task command named ``NAME``."""
    from gfssm.pipelines.cli import batch_command

    found = task_commands(command)
    sub = parser.add_subparsers(dest="what", required=True, metavar=metavar)
    for task, spec in found:
        p = sub.add_parser(spec.name, help=spec.help, description=spec.description or spec.help)
        batch_command.attach(p, task, spec)


def base_dir() -> Path:
    """The folder the user ran the command in: relative paths are taken from here."""
    return Path.cwd()
