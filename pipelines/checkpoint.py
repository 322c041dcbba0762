"""Training checkpoints that are also model directories.

A checkpoint folder holds ``model.pt`` + ``gfssm.json`` (so ``gfssm.tasks.load_model`` and
every ``--model`` option accept it) and ``train_state.pt``: optimizer, scheduler, step, RNG
states, counters and the resolved experiment. Everything loads with ``weights_only=True``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gfssm.config import GFSSMConfig
from gfssm.tasks.base import Task, TaskSettings
from gfssm.tasks.pretrained import WEIGHTS_FILE, save_model

STATE_FILE = "train_state.pt"


@dataclass
class TrainState:
    """What a resumed run needs besides the weights."""

    step: int
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    nonfinite_steps: int = 0
    rng: dict[str, Any] = field(default_factory=dict)
    experiment: dict[str, Any] = field(default_factory=dict)
    last_eval: dict[str, float] = field(default_factory=dict)
    stability: dict[str, Any] = field(default_factory=dict)


def capture_rng() -> dict[str, Any]:
    """This process's RNG states as tensors and plain values (``weights_only``-safe)."""
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np.asarray(np_state["state"]["key"]).astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        n = state["numpy"]
        np.random.set_state(
            {
                "bit_generator": n["bit_generator"],
                "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
                "has_gauss": n["has_gauss"],
                "gauss": n["gauss"],
            }
        )
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_checkpoint(
    directory: Path,
    *,
    task: Task,
    model: nn.Module,
    config: GFSSMConfig,
    settings: TaskSettings,
    state: TrainState,
) -> Path:
    """Write a model directory plus ``train_state.pt`` into ``directory``."""
    save_model(
        directory,
        task=task,
        model=model,
        config=config,
        settings=settings,
        extra={"step": state.step, "experiment_name": state.experiment.get("name")},
    )
    torch.save(
        {
            "step": state.step,
            "optimizer": state.optimizer,
            "scheduler": state.scheduler,
            "nonfinite_steps": state.nonfinite_steps,
            "rng": state.rng,
            "experiment": state.experiment,
            "last_eval": state.last_eval,
            "stability": state.stability,
        },
        directory / STATE_FILE,
    )
    return directory


def read_checkpoint(directory: Path, *, map_location: str | torch.device = "cpu"):
    """``(weights, TrainState)`` from a checkpoint folder, loaded with ``weights_only=True``."""
    directory = Path(directory)
    for name in (WEIGHTS_FILE, STATE_FILE):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory}: not a training checkpoint ({name} missing)")
    weights = torch.load(directory / WEIGHTS_FILE, map_location=map_location, weights_only=True)
    raw = torch.load(directory / STATE_FILE, map_location=map_location, weights_only=True)
    state = TrainState(
        step=int(raw["step"]),
        optimizer=raw["optimizer"],
        scheduler=raw["scheduler"],
        nonfinite_steps=int(raw.get("nonfinite_steps", 0)),
        rng=raw.get("rng", {}),
        experiment=raw.get("experiment", {}),
        last_eval=dict(raw.get("last_eval", {})),
        stability=dict(raw.get("stability", {})),
    )
    return weights, state
