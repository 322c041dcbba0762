"""What a task plugin provides, and how plugins are found (the ``gfssm.tasks`` entry point).

A task turns its own data into batches, builds its model from a :class:`GFSSMConfig`, and
computes a loss and evaluation metrics. Pipelines (Ray Train/Tune, MLflow) drive any task
through this interface only; task-specific work (genome scoring, transcription) is exposed
by each task's own modules.

Third parties register a task in their ``pyproject.toml``::

    [project.entry-points."gfssm.tasks"]
    mytask = "mypackage.task:MyTask"
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from gfssm.config import GFSSMConfig

ENTRY_POINT_GROUP = "gfssm.tasks"
Batch = dict[str, torch.Tensor]


class TaskSettings(BaseModel):
    """Base of every task's settings (the ``task:`` section of an experiment file).

    Frozen, and unknown keys are errors, so a typo never passes silently.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass
class StepOutput:
    """loss: scalar to back-propagate (a mean over ``count`` items); metrics: floats to log."""

    loss: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)
    count: int = 1


class Task(abc.ABC):
    """A task plugin. Subclasses set ``name`` and ``settings_type`` and implement the rest."""

    name: ClassVar[str]
    settings_type: ClassVar[type[TaskSettings]]

    def settings(self, values: Mapping[str, Any] | None = None) -> TaskSettings:
        """Validate the ``task:`` section into this task's settings."""
        return self.settings_type(**dict(values or {}))

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
