"""What a task plugin provides, and how plugins are found (the ``gfssm.tasks`` entry point).

A task turns its own data into batches, builds its model from a :class:`GFSSMConfig`, and
computes a loss and evaluation metrics. It also owns everything else about its data: it
resolves and checks the user's paths (:meth:`Task.prepare`), offers batch jobs and data
commands (:meth:`Task.commands`, see :mod:`gfssm.tasks.jobs`) and its MLflow predictor
(:meth:`Task.predictor`). Pipelines (Ray Train/Tune/Data, MLflow, the command line) drive any
task through this interface only.

Third parties register a task in their ``pyproject.toml``::

    [project.entry-points."gfssm.tasks"]
    mytask = "mypackage.task:MyTask"
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from gfssm.config import GFSSMConfig
from gfssm.tasks.jobs import PredictorSpec, TaskCommand

ENTRY_POINT_GROUP = "gfssm.tasks"
Batch = dict[str, torch.Tensor]


class TaskSettings(BaseModel):
    """Base of every task's settings (the ``task:`` section of an experiment file).

    Frozen, and unknown keys are errors, so a typo never passes silently.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass
class StepOutput:
    """loss: scalar to back-propagate (a mean over ``count`` items); metrics: floats to log;
    tokens: input positions the step processed (for throughput; 0 = use ``count``)."""

    loss: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)
    count: int = 1
    tokens: int = 0


class Task(abc.ABC):
    """A task plugin. Subclasses set ``name`` and ``settings_type`` and implement the rest."""

    name: ClassVar[str]
    settings_type: ClassVar[type[TaskSettings]]

    def settings(self, values: Mapping[str, Any] | None = None) -> TaskSettings:
        """Validate the ``task:`` section into this task's settings."""
        return self.settings_type(**dict(values or {}))

    def prepare(self, settings, base_dir: Path):
        """The settings with every path made absolute against ``base_dir`` (the folder the
        user ran the command in; ``~`` expanded, URIs kept) and every input checked, so that
        a missing or malformed file is reported in the driver, in seconds, before any Ray
        worker starts. Raises :class:`~gfssm.tasks.TaskInputError`. Runs in the driver only;
        workers get the returned settings. The default has no paths to resolve."""
        return settings

    def commands(self) -> list[TaskCommand]:
        """The ``gfssm`` commands this task adds (batch jobs and data steps)."""
        return []

    def predictor(self) -> PredictorSpec | None:
        """What the MLflow pyfunc of this task's models takes and returns (None: the model
        is logged without a predict function of its own)."""
        return None

    def usage_hint(self, run_id: str, settings: Any = None) -> str | None:
        """A command line that uses a finished run's model, printed after training.

        ``settings``: the task settings the run trained with (paths resolved); for a resumed
        run, those of the run. Tasks may also define ``usage_hint(run_id)`` alone.
        """
        return None

    def model_config(self, preset: str, overrides: Mapping[str, Any], settings) -> GFSSMConfig:
        """The model config for ``preset`` with the task's needs (e.g. its vocabulary size)
        and the user's ``overrides`` applied, in that order."""
        values = {**self.model_defaults(settings), **dict(overrides)}
        return GFSSMConfig.preset(preset, **values)

    def model_defaults(self, settings) -> dict[str, Any]:
        """Model fields this task sets unless the user overrides them."""
        return {}

    @abc.abstractmethod
    def build_model(self, config: GFSSMConfig, settings) -> nn.Module:
        """A freshly initialised model for this task."""

    @abc.abstractmethod
    def train_batches(
        self,
        settings,
        *,
        seed: int,
        rank: int,
        world_size: int,
        batch_size: int,
        start_step: int = 0,
    ) -> Iterator[Batch]:
        """Endless training batches of this worker's shard, from step ``start_step`` on.

        The batch of a given (seed, rank, world_size, step) is always the same, so a run that
        resumes from a checkpoint at step ``s`` neither repeats nor skips data.
        """

    @abc.abstractmethod
    def training_step(self, model: nn.Module, batch: Batch) -> StepOutput:
        """Loss and metrics of one batch (already on the model's device)."""

    @abc.abstractmethod
    def evaluate(
        self,
        model: nn.Module,
        settings,
        *,
        batch_size: int,
        max_batches: int | None = None,
        device: torch.device | str = "cpu",
    ) -> dict[str, float]:
        """Validation metrics (names without prefix, e.g. ``loss``, ``bits_per_base``)."""


def available_tasks() -> dict[str, EntryPoint]:
    """Installed task plugins by name."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def get_task(name: str) -> Task:
    """Load and instantiate the task plugin registered as ``name``."""
    found = available_tasks()
    if name not in found:
        listed = ", ".join(sorted(found)) or "none"
        raise KeyError(
            f"no task named {name!r}; installed tasks: {listed} "
            f"(plugins register under the {ENTRY_POINT_GROUP!r} entry point)"
        )
    loaded = found[name].load()
    task = loaded() if isinstance(loaded, type) else loaded
    if not isinstance(task, Task):
        raise TypeError(f"the {name!r} task plugin ({found[name].value}) is not a gfssm Task")
    return task


def move_batch(batch: Batch, device: torch.device | str) -> Batch:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
