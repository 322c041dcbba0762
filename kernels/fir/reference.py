"""Causal grouped FIR filter in plain PyTorch (spec section 2): CPU path and reference.

Weights are lag-indexed: ``weight[c, k]`` multiplies the input ``k`` steps back. Taps with
``k >= kernel_sizes[c]`` are masked to zero, so they also get no gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gfssm.kernels.fir.depthwise import CausalDepthwiseConv

ACTIVATIONS = ("silu", None)


def tap_mask(kernel_sizes: torch.Tensor, k_max: int) -> torch.Tensor:
    """(C, K_max) bool, True where tap ``k < kernel_sizes[c]``."""
    return torch.arange(k_max, device=kernel_sizes.device)[None, :] < kernel_sizes[:, None]


def _activate(y: torch.Tensor, activation: str | None) -> torch.Tensor:
    """``y`` activated; in place when no gradient flows (y is always a fresh tensor here)."""
    if activation != "silu":
        return y
    return F.silu(y) if y.requires_grad else F.silu(y, inplace=True)


def _segment_ids(seq_idx: torch.Tensor) -> torch.Tensor:
    change = torch.zeros_like(seq_idx, dtype=torch.bool)
    change[:, 1:] = seq_idx[:, 1:] != seq_idx[:, :-1]
    return change.long().cumsum(dim=1)


def grouped_fir_reference(
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
    """x: (b, L, C), weight: (C, K), bias: (C,), kernel_sizes: (C,) ints.

    initial_inputs: (b, K-1, C), the inputs before position 0 (oldest first), used by the
    first sequence of each row. Returns y (b, L, C), or (y, final_inputs (b, K-1, C)): the
    last K-1 inputs of each row's last sequence, zero before that sequence starts.
    """
    b, L, C = x.shape
    K = weight.shape[1]
    w = (weight * tap_mask(kernel_sizes, K).to(weight.dtype)).to(x.dtype)
    history = x.new_zeros(b, K - 1, C) if initial_inputs is None else initial_inputs.to(x.dtype)
    b_ = None if bias is None else bias.to(x.dtype)

    if seq_idx is None:
        padded = torch.cat([history, x], dim=1)  # (b, K-1+L, C)
        y = CausalDepthwiseConv.apply(padded, w, b_)
        final = padded[:, L:]
    else:
        # Spread the row so that K-1 zeros stand before every sequence but the first (which
        # has the history): one convolution then never reaches across a boundary.
        seg = _segment_ids(seq_idx)
        where = (K - 1) + torch.arange(L, device=x.device) + (K - 1) * seg  # (b, L)
        spread_len = (K - 1) + L + (K - 1) * int(seg[:, -1].max())
        index = where[..., None].expand(b, L, C)
        spread = torch.cat([history, x.new_zeros(b, spread_len - (K - 1), C)], dim=1)
        spread = spread.scatter(1, index, x)
        y = torch.gather(CausalDepthwiseConv.apply(spread, w, b_), 1, index - (K - 1))
        last = where[:, -1:] - (K - 2) + torch.arange(K - 1, device=x.device)  # (b, K-1)
        final = torch.gather(spread, 1, last[..., None].expand(b, K - 1, C))
    y = _activate(y, activation)
    return (y, final) if return_final_inputs else y


def fir_step_reference(
    x: torch.Tensor,
    window: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    kernel_sizes: torch.Tensor,
    *,
    activation: str | None = "silu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token: x (b, C), window (b, K-1, C) of the previous inputs (oldest first).

    Returns y (b, C) and the new window (b, K-1, C).
    """
    K = weight.shape[1]
    w = (weight * tap_mask(kernel_sizes, K).to(weight.dtype)).to(x.dtype)
    full = torch.cat([window.to(x.dtype), x[:, None]], dim=1)  # (b, K, C), newest last
    y = torch.einsum("bkc,ck->bc", full.flip(1), w)
    if bias is not None:
        y = y + bias.to(x.dtype)
    return _activate(y, activation), full[:, 1:]
