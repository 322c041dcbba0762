"""Argument checks shared by the kernel entry points: errors name the op, the argument,
the expected shape and what was given."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from gfssm.kernels.state import ScanState


def check_shape(op: str, name: str, t: torch.Tensor, expected: Sequence[int]) -> None:
    if tuple(t.shape) != tuple(expected):
        raise ValueError(f"{op}: {name} must have shape {tuple(expected)}, got {tuple(t.shape)}")


def check_state(op: str, state: ScanState, expected: Sequence[int]) -> None:
    if not isinstance(state, ScanState):
        raise TypeError(f"{op}: the state must be a ScanState, got {type(state).__name__}")
    check_shape(op, "state.ssm", state.ssm, expected)
    check_shape(op, "state.init_sink", state.init_sink, expected)
    check_shape(op, "state.seen", state.seen, expected[:1])
