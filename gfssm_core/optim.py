"""Optimizer parameter groups that honour the model's no-weight-decay marks."""

from __future__ import annotations

from typing import Any

from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two AdamW groups: decayed weights, and ``A_log, dt_bias, D, sink_gain``, norms and
    biases (marked ``_no_weight_decay`` or 1-D) without decay. Tied weights appear once."""
    decay, no_decay, seen = [], [], set()
    for param in model.parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        if getattr(param, "_no_weight_decay", False) or param.dim() < 2:
            no_decay.append(param)
        else:
            decay.append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
