"""Causal grouped FIR filter in plain PyTorch (spec section 2): CPU path and reference.

Weights are lag-indexed: ``weight[c, k]`` multiplies the input ``k`` steps back. Taps with
``k >= kernel_sizes[c]`` are masked to zero, so they also get no gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

ACTIVATIONS = ("silu", None)


def tap_mask(kernel_sizes: torch.Tensor, k_max: int) -> torch.Tensor:
    """(C, K_max) bool, True where tap ``k < kernel_sizes[c]``."""
    return torch.arange(k_max, device=kernel_sizes.device)[None, :] < kernel_sizes[:, None]


def _activate(y: torch.Tensor, activation: str | None) -> torch.Tensor:
    return F.silu(y) if activation == "silu" else y


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
    w = weight * tap_mask(kernel_sizes, K).to(weight.dtype)
    if initial_inputs is None:
        history = x.new_zeros(b, K - 1, C)
    else:
        history = initial_inputs.to(x.dtype)
    padded = torch.cat([history, x], dim=1)  # (b, K-1+L, C)

    if seq_idx is None:
        y = F.conv1d(
            padded.transpose(1, 2),
            w.flip(-1).unsqueeze(1).to(x.dtype),
            None if bias is None else bias.to(x.dtype),
            groups=C,
        ).transpose(1, 2)
        seg_padded = None
    else:
        # Inputs before position 0 belong to the row's first sequence (segment 0).
        seg = _segment_ids(seq_idx)
        seg_padded = torch.cat([seg.new_zeros(b, K - 1), seg], dim=1)
        y = x.new_zeros(b, L, C) if bias is None else bias.to(x.dtype).expand(b, L, C).clone()
        for k in range(K):
            lagged = padded[:, K - 1 - k : K - 1 - k + L]
            same = (seg_padded[:, K - 1 - k : K - 1 - k + L] == seg)[..., None]
            y = y + lagged * same * w[:, k].to(x.dtype)
    y = _activate(y, activation)
    if not return_final_inputs:
        return y
    final = padded[:, L:]
    if seg_padded is not None:
        final = final * (seg_padded[:, L:] == seg_padded[:, -1:])[..., None]
    return y, final


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
