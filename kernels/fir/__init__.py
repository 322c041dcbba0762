"""Causal grouped FIR filtering: public entry points, argument checks and dispatch."""

from __future__ import annotations

import torch

from gfssm.kernels.checks import check_shape
from gfssm.kernels.dispatch import select_backend
from gfssm.kernels.fir.reference import (
    ACTIVATIONS,
    fir_step_reference,
    grouped_fir_reference,
    tap_mask,
)
from gfssm.kernels.triton_support import TensorCache, has_triton_kernel, load_triton_module

_TAP_RANGES = TensorCache()

__all__ = ["fir_step", "grouped_fir", "tap_mask"]


def _check_filter(op: str, C: int, weight: torch.Tensor, bias, kernel_sizes, activation) -> int:
    if weight.dim() != 2 or weight.shape[0] != C:
        raise ValueError(f"{op}: weight must be (C={C}, K_max), got {tuple(weight.shape)}")
    K = weight.shape[1]
    if K < 1:
        raise ValueError(f"{op}: weight needs at least one tap, got K_max={K}")
    if bias is not None:
        check_shape(op, "bias", bias, (C,))
    check_shape(op, "kernel_sizes", kernel_sizes, (C,))
    if kernel_sizes.is_floating_point():
        raise ValueError(f"{op}: kernel_sizes must hold integers")
    if C:
        # Read back once per tap-count tensor (a module buffer), not on every call.
        lo, hi = _TAP_RANGES.get(
            (kernel_sizes,), (), lambda: (int(kernel_sizes.min()), int(kernel_sizes.max()))
        )
        if lo < 1 or hi > K:
            raise ValueError(f"{op}: kernel_sizes must lie in [1, K_max={K}], got [{lo}, {hi}]")
    if activation not in ACTIVATIONS:
        raise ValueError(f"{op}: activation must be one of {ACTIVATIONS}, got {activation!r}")
    return K


def grouped_fir(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    kernel_sizes: torch.Tensor,
    *,
    activation: str | None = "silu",
    seq_idx: torch.Tensor | None = None,
    initial_inputs: torch.Tensor | None = None,
    return_final_inputs: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``y[t, c] = act(bias[c] + sum_{k < K(c)} weight[c, k] * x[t - k, c])`` (spec section 2).

    x: (b, L, C), weight: (C, K_max) lag-indexed, bias: (C,), kernel_sizes: (C,) ints,
    seq_idx: (b, L) (no tap crosses a change), initial_inputs: (b, K_max-1, C) oldest first.
    Returns y: (b, L, C), or (y, final_inputs (b, K_max-1, C)).
    """
    if x.dim() != 3:
        raise ValueError(f"grouped_fir: x must be (b, L, C), got shape {tuple(x.shape)}")
    b, L, C = x.shape
    K = _check_filter("grouped_fir", C, weight, bias, kernel_sizes, activation)
    if seq_idx is not None:
        check_shape("grouped_fir", "seq_idx", seq_idx, (b, L))
    if initial_inputs is not None:
        check_shape("grouped_fir", "initial_inputs", initial_inputs, (b, K - 1, C))
    backend = select_backend(
        f"grouped_fir ({x.dtype})", x.device, has_triton_kernel=has_triton_kernel(x)
    )
    impl = grouped_fir_reference
    if backend == "triton":
        impl = load_triton_module("fir.triton_ops").grouped_fir_triton
    return impl(
        x,
        weight,
        bias,
        kernel_sizes,
        activation=activation,
        seq_idx=seq_idx,
        initial_inputs=initial_inputs,
        return_final_inputs=return_final_inputs,
    )


def fir_step(
    x: torch.Tensor,
    window: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    kernel_sizes: torch.Tensor,
    *,
    activation: str | None = "silu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token of :func:`grouped_fir`: x (b, C), window (b, K_max-1, C) oldest first.

    Returns y (b, C) and the new window.
    """
    if x.dim() != 2:
        raise ValueError(f"fir_step: x must be (b, C), got shape {tuple(x.shape)}")
    b, C = x.shape
    K = _check_filter("fir_step", C, weight, bias, kernel_sizes, activation)
    check_shape("fir_step", "window", window, (b, K - 1, C))
    backend = select_backend(
        f"fir_step ({x.dtype})", x.device, has_triton_kernel=has_triton_kernel(x)
    )
    impl = fir_step_reference
    if backend == "triton":
        impl = load_triton_module("fir.triton_ops").fir_step_triton
    return impl(x, window, weight, bias, kernel_sizes, activation=activation)
