"""Launchers and the autograd wrapper of the Triton grouped FIR (kernels in ``fir/triton.py``).

Imported lazily by :func:`gfssm.kernels.grouped_fir` when the dispatch selects Triton.
"""

from __future__ import annotations

import torch
import triton

from gfssm.kernels.fir import triton as fir_kernels
from gfssm.kernels.fir.reference import fir_step_reference
from gfssm.kernels.triton_support import (
    TensorCache,
    for_gpu,
    grads_through_reference,
    new_buffer,
    next_power_of_2,
    on_input_device,
)

BUILT_INTERPRETED = fir_kernels.BUILT_INTERPRETED


_TAPS = TensorCache()


def tap_counts(kernel_sizes: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The tap counts as the kernels read them (int32, contiguous, on ``device``), converted
    once per tap-count tensor rather than on every call."""
    return _TAPS.get(
        (kernel_sizes,), (device,),
        lambda: kernel_sizes.to(device=device, dtype=torch.int32).contiguous(),
    )  # fmt: skip


def segment_ids(seq_idx: torch.Tensor) -> torch.Tensor:
    """(b, L) int32 segment ids: 0 for each row's first sequence, +1 at each change."""
    change = torch.zeros_like(seq_idx, dtype=torch.int32)
    change[:, 1:] = (seq_idx[:, 1:] != seq_idx[:, :-1]).to(torch.int32)
    return change.cumsum(dim=1, dtype=torch.int32)


def _stretches(rows: int, channel_blocks: int, length: int, device: torch.device) -> int:
    """How many stretches of L the dweight pass splits each row into: enough programs to
    fill the GPU, few enough that the (stretches, C, K) partials stay small."""
    if device.type == "meta":  # the resource check: an H100/H200
        sms = 132
    elif device.type != "cuda":
        return 1
    else:
        sms = torch.cuda.get_device_properties(device).multi_processor_count
    want = -(-4 * sms // max(1, rows * channel_blocks))
    return max(1, min(want, -(-length // 256)))


class GroupedFirFunction(torch.autograd.Function):
    """y = act(bias + causal grouped FIR of x); gradients for x, weight, bias, history."""

    @staticmethod
    @on_input_device
    def forward(ctx, x, weight, bias, kernel_sizes, seg, history, silu: bool):
        b, L, C = x.shape
        K = weight.shape[1]
        ks = tap_counts(kernel_sizes, x.device)
        y = new_buffer(b, L, C, device=x.device, dtype=x.dtype)
        hist = history if history is not None else x  # placeholder pointer, never read
        seg_arg = seg if seg is not None else ks

        def grid(meta):
            return (triton.cdiv(L, meta["BLOCK_L"]), triton.cdiv(C, meta["BLOCK_C"]), b)

        fir_kernels._fir_fwd_kernel[grid](
            x, weight, bias if bias is not None else weight, ks, seg_arg, hist, y,
            L, C, *x.stride(), *weight.stride(), *_hist_strides(history),
            K=K, HAS_BIAS=bias is not None, HAS_SEQ=seg is not None,
            HAS_HIST=history is not None, SILU=silu,
        )  # fmt: skip
        ctx.save_for_backward(x, weight, bias, ks, seg, history)
        ctx.silu = silu
        return y

    @staticmethod
    @on_input_device
    def backward(ctx, dy):
        x, weight, bias, ks, seg, history = ctx.saved_tensors
        b, L, C = x.shape
        K = weight.shape[1]
        K_pow2 = next_power_of_2(K)
        hist = history if history is not None else x
        seg_arg = seg if seg is not None else ks
        dpre = new_buffer(b, L, C, device=x.device, dtype=torch.float32)
        # Partials sized for the smallest channel block any config uses.
        n_stretch = _stretches(b, triton.cdiv(C, 64), L, x.device)
        dw_part = new_buffer(b * n_stretch, C, K_pow2, device=x.device, dtype=torch.float32)
        db_part = new_buffer(b * n_stretch, C, device=x.device, dtype=torch.float32)
        fir_kernels._fir_bwd_dpre_kernel[
            lambda meta: (triton.cdiv(C, meta["BLOCK_C"]), b, n_stretch)
        ](
            x, weight, bias if bias is not None else weight, ks, seg_arg, hist, dy, dpre,
            dw_part, db_part, L, C, n_stretch, *x.stride(), *weight.stride(),
            *_hist_strides(history), *dy.stride(),
            K=K, K_POW2=K_pow2, HAS_BIAS=bias is not None, HAS_SEQ=seg is not None,
            HAS_HIST=history is not None, SILU=ctx.silu,
        )  # fmt: skip
        dx = new_buffer(b, L, C, device=x.device, dtype=x.dtype)
        dhist = None
        if history is not None:
            dhist = new_buffer(b, K - 1, C, device=x.device, dtype=history.dtype)

        def grid(meta):
            return (triton.cdiv(L + K - 1, meta["BLOCK_L"]), triton.cdiv(C, meta["BLOCK_C"]), b)

        fir_kernels._fir_bwd_dx_kernel[grid](
            dpre, weight, ks, seg_arg, dx, dhist if dhist is not None else dx,
            L, C, *weight.stride(),
            K=K, HAS_SEQ=seg is not None, HAS_HIST=history is not None,
        )  # fmt: skip
        dweight = dw_part.sum(0)[:, :K].to(weight.dtype)
        dbias = db_part.sum(0).to(bias.dtype) if bias is not None else None
        return dx, dweight, dbias, None, None, dhist, None


def _hist_strides(history: torch.Tensor | None) -> tuple[int, int, int]:
    return tuple(history.stride()) if history is not None else (0, 0, 0)


def final_inputs(
    x: torch.Tensor, history: torch.Tensor | None, seg: torch.Tensor | None, K: int
) -> torch.Tensor:
    """The last K-1 inputs of each row's last sequence (b, K-1, C), zero before it starts;
    plain tensor ops, so autograd reaches x and the history through them."""
    b, L, C = x.shape
    if K == 1:
        return x.new_zeros(b, 0, C)
    if history is None:
        history = x.new_zeros(b, K - 1, C)
    tail = torch.cat([history.to(x.dtype), x], dim=1)[:, -(K - 1) :]  # (b, K-1, C)
    if seg is None:
        return tail
    seg_pad = torch.cat([seg.new_zeros(b, K - 1), seg], dim=1)[:, -(K - 1) :]
    return tail * (seg_pad == seg[:, -1:]).unsqueeze(-1).to(x.dtype)


def grouped_fir_triton(
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
    """Arguments as :func:`gfssm.kernels.grouped_fir` (already validated)."""
    K = weight.shape[1]
    seg = segment_ids(seq_idx) if seq_idx is not None else None
    history = initial_inputs if K > 1 else None
    y = GroupedFirFunction.apply(x, weight, bias, kernel_sizes, seg, history, activation == "silu")
    if not return_final_inputs:
        return y
    return y, final_inputs(x, initial_inputs, seg, K)


class FirStepFunction(torch.autograd.Function):
    """The decode step in Triton; its backward (rarely needed: decoding runs without
    gradients) differentiates the PyTorch reference of the same step."""

    @staticmethod
    @on_input_device
    def forward(ctx, x, window, weight, bias, kernel_sizes, silu: bool):
        b, C = x.shape
        K = weight.shape[1]
        ks = tap_counts(kernel_sizes, x.device)
        y = new_buffer(b, C, device=x.device, dtype=x.dtype)
        new_window = new_buffer(b, K - 1, C, device=x.device, dtype=x.dtype)
        block_c = 128 if for_gpu(x) else 16
        fir_kernels._fir_step_kernel[(b, triton.cdiv(C, block_c))](
            x, window, weight, bias if bias is not None else weight, ks, y, new_window,
            C, *x.stride(), *window.stride(), *weight.stride(),
            K=K, HAS_BIAS=bias is not None, SILU=silu, BLOCK_C=block_c,
        )  # fmt: skip
        ctx.save_for_backward(x, window, weight, bias, kernel_sizes)
        ctx.silu = silu
        return y, new_window

    @staticmethod
    @on_input_device
    def backward(ctx, dy, dwindow):
        x, window, weight, bias, kernel_sizes = ctx.saved_tensors
        silu = ctx.silu

        def step(x, window, weight, bias):
            act = "silu" if silu else None
            return fir_step_reference(x, window, weight, bias, kernel_sizes, activation=act)

        grads = grads_through_reference(
            step, [x, window, weight, bias], list(ctx.needs_input_grad[:4]), [dy, dwindow]
        )
        return (*grads, None, None)


def fir_step_triton(
    x: torch.Tensor,
    window: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    kernel_sizes: torch.Tensor,
    *,
    activation: str | None = "silu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Arguments as :func:`gfssm.kernels.fir_step` (already validated)."""
    return FirStepFunction.apply(x, window, weight, bias, kernel_sizes, activation == "silu")


__all__ = ["fir_step_triton", "grouped_fir_triton"]
