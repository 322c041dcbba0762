"""Causal depthwise convolution with a hand-written backward, the workhorse of the FIR
reference on CPU.

Autograd through ``conv1d`` works but its depthwise weight gradient is slow on CPU (it was
~80% of the FIR's forward+backward time at L=16k). Here the forward and the input gradient
are depthwise convolutions in channels-last layout (no transposed copies of (b, L, C)), and
the weight gradient is one more depthwise correlation, with the output gradient as kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Rows per block when transposing (b, L, C) to (b, C, L): a block of both layouts stays in
# cache, which makes the copy 2-3x faster than one strided copy of the whole tensor.
TRANSPOSE_BLOCK = 256


def channel_major(x: torch.Tensor) -> torch.Tensor:
    """(b, L, C) -> contiguous (b, C, L), copied block by block along time."""
    b, L, C = x.shape
    out = x.new_empty(b, C, L)
    for i in range(0, L, TRANSPOSE_BLOCK):
        out[:, :, i : i + TRANSPOSE_BLOCK] = x[:, i : i + TRANSPOSE_BLOCK].transpose(1, 2)
    return out


def _conv_channels_last(x: torch.Tensor, taps: torch.Tensor, bias, pad: int) -> torch.Tensor:
    """Depthwise correlation ``out[t] = bias + sum_j taps[c, j] x[t + j - pad]`` along time,
    with ``pad`` zeros on both ends. x: (b, T, C), taps: (C, K) -> (b, T + 2 pad - K + 1, C).
    """
    C, K = taps.shape
    x4 = x.transpose(1, 2).unsqueeze(2)  # (b, C, 1, T): channels-last strides, no copy
    out = F.conv2d(x4, taps.reshape(C, 1, 1, K), bias, padding=(0, pad), groups=C)
    return out.squeeze(2).transpose(1, 2)


def depthwise_weight_grad(gy: torch.Tensor, xp: torch.Tensor, K: int) -> torch.Tensor:
    """``dw[c, k] = sum_{b, t} gy[b, t, c] * xp[b, t + K - 1 - k, c]``.

    gy: (b, L, C), xp: (b, L + K - 1, C) -> (C, K). Computed as one depthwise correlation of
    ``xp`` with ``gy`` as a length-L kernel (batch folded into channels), which evaluates the
    K lags directly; only ``gy`` needs a channel-major copy.
    """
    b, L, C = gy.shape
    kernels = channel_major(gy).view(b * C, 1, 1, L)
    if b == 1:
        inputs = xp.transpose(1, 2).unsqueeze(2)  # (1, C, 1, L + K - 1), channels-last view
    else:  # (1, b * C, 1, T) in channels-last order: time outermost, then (b, C)
        inputs = xp.permute(1, 0, 2).reshape(1, -1, b * C).transpose(1, 2).unsqueeze(2)
    lags = F.conv2d(inputs, kernels, groups=b * C)  # (1, b * C, 1, K), lag K - 1 - k at k
    return lags.view(b, C, K).sum(dim=0).flip(-1)


class CausalDepthwiseConv(torch.autograd.Function):
    """``y[b, t, c] = bias[c] + sum_k w[c, k] xp[b, t + K - 1 - k, c]``.

    xp: (b, L + K - 1, C) inputs with K - 1 positions of history in front, w: (C, K)
    lag-indexed, bias: (C,) or None -> y: (b, L, C).
    """

    @staticmethod
    def forward(ctx, xp: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None):
        ctx.save_for_backward(xp, w)
        ctx.has_bias = bias is not None
        return _conv_channels_last(xp, w.flip(-1), bias, 0)

    @staticmethod
    def backward(ctx, gy: torch.Tensor):
        xp, w = ctx.saved_tensors
        K = w.shape[1]
        gy = gy.contiguous()
        dxp = dw = dbias = None
        if ctx.needs_input_grad[0]:
            # dxp[s] = sum_k w[k] gy[s - (K - 1) + k]: a correlation with K - 1 zeros each side.
            dxp = _conv_channels_last(gy, w, None, K - 1)
        if ctx.needs_input_grad[1]:
            dw = depthwise_weight_grad(gy, xp, K).to(w.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            dbias = gy.sum(dim=(0, 1))
        return dxp, dw, dbias
