"""What a task offers beyond training: batch jobs, data commands and its MLflow predictor.

Pipelines know nothing about a task's data. They build the ``gfssm`` command line from each
installed task's :meth:`~gfssm.tasks.Task.commands`, and run every batch job the same way:

1. in the driver, :meth:`TaskCommand.make_job` turns the parsed arguments (paths resolved
   against the user's folder) and the loaded model into a :class:`BatchJob`, checking every
   input before Ray starts (bad input raises :class:`~gfssm.tasks.TaskInputError`);
2. :meth:`BatchJob.plan` cuts the work into :class:`WorkItem` s; pipelines keep one shard per
   finished item in a shard store keyed by the job's :meth:`BatchJob.fingerprint` plus the
   model's, so a rerun skips what is done and never mixes two runs;
3. in each actor of a pool, :meth:`BatchJob.make_worker` builds a per-item function once
   (model loaded, decoder built); it maps an item's payload to result bytes;
4. :meth:`BatchJob.finish` merges the stored results into the user's outputs.

Third-party tasks get ``gfssm <command> ...``, the actor pool, resuming, Ctrl-C handling and
progress bars by returning their own :class:`TaskCommand` s.
"""

from __future__ import annotations

import abc
import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from gfssm.tasks.pretrained import LoadedModel

Log = Callable[[str], None]


class TaskInputError(ValueError):
    """Bad user input: the message names the file, the line or record, and what was
    expected. The command line shows it as one line (no traceback) and exits with code 2."""


@dataclass(frozen=True)
class WorkItem:
    """One unit of a batch job.

    ``key``: unique within the job, stable across reruns and usable as a file name;
    ``payload``: JSON-able, all the worker needs; ``size``: progress units (bases, seconds).
    """

    key: str
    payload: dict[str, Any]
    size: float = 1.0


class BatchJob(abc.ABC):
    """One planned run of a task's batch job. Built in the driver; pickled to the actors."""

    #: progress unit shown by the bar ("base", "s", "file")
    unit: str = "item"
    #: a few words for the progress bar ("scoring", "transcribing")
    description: str = "working"

    @abc.abstractmethod
    def plan(self) -> list[WorkItem]:
        """Every work item, in output order."""

    @abc.abstractmethod
    def fingerprint(self) -> dict[str, Any]:
        """What decides the results apart from the model: input file identities (path, size,
        mtime or a content hash) and options. JSON-able."""

    @abc.abstractmethod
    def shard_dir(self) -> Path:
        """The folder where pipelines keep one result per finished item (beside the
        outputs, so that a rerun of the same command finds it)."""

    @abc.abstractmethod
    def make_worker(self, loaded: LoadedModel) -> Callable[[dict[str, Any]], bytes]:
        """In an actor, once: a function from a work item's payload to its result bytes."""

    def summary(self) -> str | None:
        """One line on how this run works (e.g. the decoding), printed when it starts."""
        return None

    @abc.abstractmethod
    def finish(self, results: Callable[[str], bytes], log: Log) -> int:
        """Merge the results (``results(key)`` for every planned key) into the outputs and
        say where they are; returns the command's exit code. Must be safe to rerun."""

    def metrics(self) -> dict[str, float]:
        """After :meth:`finish`: the numbers to record beside the model in MLflow (flat
        names, ``/`` between levels), e.g. an evaluation's scores; none for a job that only
        writes outputs."""
        return {}


@dataclass(frozen=True)
class TaskCommand:
    """A ``gfssm`` command a task offers.

    ``command`` is the first word (``score``, ``transcribe``, ``eval``, ``data``); ``name``
    the second (``gfssm score genome``), or None when the task's command stands alone
    (``gfssm transcribe``). Exactly one of ``make_job`` (a batch job over a trained model:
    pipelines add ``--model``, ``--actors`` and the Ray options) and ``run`` (a local data
    step, no model, no Ray) is set. Path arguments are plain strings as typed; resolve them
    with ``base_dir`` (the folder the user ran the command in).
    """

    command: str
    name: str | None
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    make_job: Callable[[argparse.Namespace, Path, LoadedModel], BatchJob] | None = None
    run: Callable[[argparse.Namespace, Path, Log], int] | None = None
    description: str | None = None

    def __post_init__(self) -> None:
        if (self.make_job is None) == (self.run is None):
            raise TypeError(f"TaskCommand {self.command} {self.name}: set make_job or run")


@dataclass(frozen=True)
class PredictorSpec:
    """The MLflow pyfunc of a task's models: column names and types (MLflow type names:
    ``string``, ``double``, ``long``, ``boolean``) and an optional input example."""

    inputs: tuple[tuple[str, str], ...]
    outputs: tuple[tuple[str, str], ...]
    example: Mapping[str, list[Any]] | None = None
    predict: Callable[[LoadedModel, pd.DataFrame], pd.DataFrame] | None = field(
        default=None, compare=False
    )


def resolve_path(value: str | None, base_dir: Path) -> str | None:
    """A user's path as an absolute path: ``~`` expanded, relative paths taken from
    ``base_dir``; URIs (``scheme://...``) are kept as they are."""
    if value is None or value == "" or "://" in value:
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base_dir / path).resolve())


def existing_file(value: str, base_dir: Path, what: str) -> Path:
    """``value`` resolved against ``base_dir``; a :class:`TaskInputError` naming ``what``
    when it is not a readable file."""
    path = Path(resolve_path(value, base_dir) or "")
    if path.is_dir():
        raise TaskInputError(f"{what} {value}: is a folder; expected a file")
    if not path.is_file():
        raise TaskInputError(f"{what} {value}: no such file (looked in {path.parent})")
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except PermissionError:
        raise TaskInputError(f"{what} {value}: not readable (permission denied)") from None
    return path


def run_job_inline(job: BatchJob, loaded: LoadedModel, log: Log = print) -> int:
    """Run ``job`` in this process, without Ray or a shard store (tests, notebooks): the
    same plan, worker and merge that ``gfssm`` runs on an actor pool."""
    items = job.plan()
    worker = job.make_worker(loaded)
    results = {item.key: worker(item.payload) for item in items}
    return job.finish(results.__getitem__, log)
