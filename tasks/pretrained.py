"""A trained model on disk: weights plus everything needed to rebuild it.

A model directory holds ``model.pt`` (a state dict, loaded with ``weights_only=True``) and
``gfssm.json`` (task name, model config, task settings, versions). Training checkpoints are
model directories too, so any of them can be scored or transcribed from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import gfssm
from gfssm.config import GFSSMConfig
from gfssm.tasks.base import Task, TaskSettings, get_task

WEIGHTS_FILE = "model.pt"
META_FILE = "gfssm.json"


@dataclass
class LoadedModel:
    task: Task
    model: nn.Module
    config: GFSSMConfig
    settings: TaskSettings
    meta: dict[str, Any]


def save_model(
    directory: str | Path,
    *,
    task: Task,
    model: nn.Module,
    config: GFSSMConfig,
    settings: TaskSettings,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model.pt`` and ``gfssm.json`` into ``directory`` (created if needed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
    torch.save(state, directory / WEIGHTS_FILE)
    meta = {
        "task": task.name,
        "model_config": config.to_dict(),
        "settings": settings.model_dump(mode="json"),
        "gfssm_version": gfssm.__version__,
        **(extra or {}),
    }
    (directory / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return directory


def read_meta(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{directory}: not a GFSSM model directory (no {META_FILE}); expected a directory "
            f"written by training or by gfssm.tasks.pretrained.save_model"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err


def load_model(directory: str | Path, *, map_location: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the model saved in ``directory`` and load its weights (eval mode)."""
    directory = Path(directory)
    meta = read_meta(directory)
    task = get_task(meta["task"])
    settings = task.settings(meta["settings"])
    config = GFSSMConfig.from_dict(meta["model_config"])
    model = task.build_model(config, settings)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{directory}: {WEIGHTS_FILE} is missing")
    state = torch.load(weights, map_location=map_location, weights_only=True)
    model.load_state_dict(state)
    model.to(map_location).eval()
    return LoadedModel(task=task, model=model, config=config, settings=settings, meta=meta)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside DDP / compiled wrappers."""
    inner = getattr(model, "module", model)
    return getattr(inner, "_orig_mod", inner)
