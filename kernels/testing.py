"""Tolerances for comparing kernel outputs, one table by dtype.

An implementation is compared against a reference computed in a wider dtype (or the same
math in another order); the tolerance is that of the *tested* dtype: a few hundred ulps
absorbs reordered float32 accumulation over chunks, half precision is bounded by its
storage of inputs and outputs.
"""

from __future__ import annotations

import torch

TOLERANCES: dict[torch.dtype, dict[str, float]] = {
    torch.float64: {"atol": 1e-10, "rtol": 1e-9},
    torch.float32: {"atol": 2e-5, "rtol": 1e-4},
    torch.float16: {"atol": 2e-3, "rtol": 5e-3},
    torch.bfloat16: {"atol": 2e-2, "rtol": 4e-2},
}


def tolerance(dtype: torch.dtype) -> dict[str, float]:
    """``{"atol": .., "rtol": ..}`` for outputs computed in ``dtype``."""
    try:
        return TOLERANCES[dtype]
    except KeyError:
        raise ValueError(f"no tolerance defined for {dtype}") from None


def assert_close(actual: torch.Tensor, expected: torch.Tensor, *, dtype=None, msg: str = ""):
    """``torch.testing.assert_close`` with the table's tolerance for ``dtype``
    (default: the dtype of ``actual``); ``expected`` may be wider and is cast."""
    tol = tolerance(dtype or actual.dtype)
    torch.testing.assert_close(
        actual.to(torch.float64), expected.to(torch.float64), msg=msg or None, **tol
    )
