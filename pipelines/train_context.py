"""Where the one training loop runs: a Ray Train worker, or this process (``--local``).

The loop (:mod:`gfssm.pipelines.train_loop`) asks its context for its rank, device, the
checkpoint to restore and where to report; Ray Train answers on a worker, and
:class:`LocalContext` answers in-process with the same checkpoint folders and the same
best-``keep`` policy, so a local run resumes, logs and finishes like a Ray run.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

INDEX_FILE = "checkpoints.json"


class RayContext:
    """A Ray Train worker (imports Ray only when used)."""

    def __init__(self) -> None:
        import ray.train
        import ray.train.torch

        self._train = ray.train
        context = ray.train.get_context()
        self.rank = context.get_world_rank()
        self.world_size = context.get_world_size()
        self.device = ray.train.torch.get_device()

    def restore(self):
        checkpoint = self._train.get_checkpoint()
        return checkpoint.as_directory() if checkpoint is not None else nullcontext(None)

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        import ray.train.torch

        return ray.train.torch.prepare_model(model)

    def report(self, metrics: dict[str, Any], folder: Path | None) -> None:
        if folder is None:
            self._train.report(metrics)
        else:
            self._train.report(metrics, checkpoint=self._train.Checkpoint.from_directory(folder))


@dataclass
class LocalCheckpoint:
    path: str
    metrics: dict[str, Any] = field(default_factory=dict)

    @contextmanager
    def as_directory(self) -> Iterator[str]:
        yield self.path


@dataclass
class LocalResult:
    """What ``TorchTrainer.fit()`` returns, for a local run."""

    path: str
    metrics: dict[str, Any]
    checkpoint: LocalCheckpoint | None
    checkpoints: list[LocalCheckpoint]

    def get_best_checkpoint(self, metric: str, mode: str) -> LocalCheckpoint | None:
        scored = [c for c in self.checkpoints if _finite(c.metrics.get(metric))]
        if not scored:
            return None
        pick = min if mode == "min" else max
        return pick(scored, key=lambda c: float(c.metrics[metric]))


def _finite(value: Any) -> bool:
    try:
        return (
            value is not None and float(value) == float(value) and abs(float(value)) != float("inf")
        )
    except (TypeError, ValueError):
        return False


class LocalContext:
    """The loop in this process: rank 0 of 1; checkpoints in ``run_dir/checkpoint_NNNNNN``,
    the ``keep`` best by ``metric`` plus the latest, listed in ``checkpoints.json``."""

    rank = 0
    world_size = 1

    def __init__(self, run_dir: Path, *, keep: int, metric: str, mode: str, use_gpu: bool):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.keep, self.metric, self.mode = keep, metric, mode
        self.device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
        self.last_metrics: dict[str, Any] = {}

    def _index(self) -> list[LocalCheckpoint]:
        path = self.run_dir / INDEX_FILE
        if not path.is_file():
            return []
        return [LocalCheckpoint(**c) for c in json.loads(path.read_text())]

    def _write_index(self, checkpoints: list[LocalCheckpoint]) -> None:
        tmp = self.run_dir / f"{INDEX_FILE}.partial"
        tmp.write_text(json.dumps([c.__dict__ for c in checkpoints], indent=1))
        tmp.replace(self.run_dir / INDEX_FILE)

    def restore(self):
        found = self._index()
        return nullcontext(Path(found[-1].path) if found else None)

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    def report(self, metrics: dict[str, Any], folder: Path | None) -> None:
        self.last_metrics = dict(metrics)
        if folder is None:
            return
        target = self.run_dir / f"checkpoint_{int(metrics['step']):06d}"
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(folder, partial)
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        checkpoints = [c for c in self._index() if c.path != str(target)]
        checkpoints.append(LocalCheckpoint(str(target), dict(metrics)))
        self._write_index(self._pruned(checkpoints))

    def _pruned(self, checkpoints: list[LocalCheckpoint]) -> list[LocalCheckpoint]:
        latest = checkpoints[-1]
        ranked = [c for c in checkpoints if _finite(c.metrics.get(self.metric))]
        ranked.sort(key=lambda c: float(c.metrics[self.metric]), reverse=self.mode == "max")
        kept = {c.path for c in ranked[: self.keep]} | {latest.path}
        for c in checkpoints:
            if c.path not in kept:
                shutil.rmtree(c.path, ignore_errors=True)
        return [c for c in checkpoints if c.path in kept]

    def result(self) -> LocalResult:
        checkpoints = self._index()
        latest = checkpoints[-1] if checkpoints else None
        metrics = {**(latest.metrics if latest else {}), **self.last_metrics}
        return LocalResult(str(self.run_dir), metrics, latest, checkpoints)
