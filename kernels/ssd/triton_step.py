"""The decode step of the scan in Triton: one token for a batch of streams (spec section 3).

One program per (stream, head, block of P) reads its state tiles once, advances ``S``
(and ``I`` while the stream is inside its first ``n_init`` tokens), reads out
``(S + K + gain * I) C + D x`` and writes the new states: decode is memory-bound on the
states, and each byte of them moves exactly twice.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from gfssm.kernels.ssd.step import ssd_step_reference
from gfssm.kernels.state import ScanState
from gfssm.kernels.triton_support import (
    TensorCache,
    built_interpreted,
    for_gpu,
    grads_through_reference,
    new_buffer,
    next_power_of_2,
    on_input_device,
)

BUILT_INTERPRETED = built_interpreted()


@triton.jit
def ssd_step_kernel(
    x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, K_ptr, gain_ptr, seen_ptr,
    S_ptr, I_ptr, y_ptr, S_out_ptr, I_out_ptr,
    H, HPG, P, N, n_init, lo, hi,
    sxb, sxh, sxp, sdb, sdh, sbb, sbg, sbn, scb, scg, scn,
    ssb, ssh, ssp, ssn, sib, sih, sip, sin,
    BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, HAS_K: tl.constexpr, HAS_GAIN: tl.constexpr,
):  # fmt: skip
    bh = tl.program_id(0)
    b = (bh // H).to(tl.int64)
    h = bh % H
    g = h // HPG
    p = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)
    n = tl.arange(0, BLOCK_N)
    p_ok, n_ok = p < P, n < N
    pn_ok = p_ok[:, None] & n_ok[None, :]

    z = tl.load(dt_ptr + b * sdb + h * sdh).to(tl.float32)
    if HAS_BIAS:
        z += tl.load(bias_ptr + h).to(tl.float32)
    if SOFTPLUS:
        z = tl.where(z > 20.0, z, tl.where(z < -15.0, tl.exp(z), tl.log(1.0 + tl.exp(z))))
    delta = tl.minimum(tl.maximum(z, lo), hi)
    decay = tl.exp(tl.minimum(delta * tl.load(A_ptr + h).to(tl.float32), 0.0))

    x = tl.load(x_ptr + b * sxb + h * sxh + p * sxp, mask=p_ok, other=0.0).to(tl.float32)
    Bv = tl.load(B_ptr + b * sbb + g * sbg + n * sbn, mask=n_ok, other=0.0).to(tl.float32)
    Cv = tl.load(C_ptr + b * scb + g * scg + n * scn, mask=n_ok, other=0.0).to(tl.float32)
    S_ptrs = S_ptr + b * ssb + h * ssh + p[:, None] * ssp + n[None, :] * ssn
    I_ptrs = I_ptr + b * sib + h * sih + p[:, None] * sip + n[None, :] * sin
    S = tl.load(S_ptrs, mask=pn_ok, other=0.0).to(tl.float32)
    I = tl.load(I_ptrs, mask=pn_ok, other=0.0).to(tl.float32)

    update = (delta * x)[:, None] * Bv[None, :]
    S = S * decay + update
    I = tl.where(tl.load(seen_ptr + b) < n_init, I + update, I)
    read = S
    if HAS_GAIN:
        read += tl.load(gain_ptr + h).to(tl.float32) * I
    if HAS_K:
        read += tl.load(K_ptr + (h * P + p[:, None]) * N + n[None, :], mask=pn_ok, other=0.0)
    y = tl.sum(read * Cv[None, :], axis=1)
    if HAS_D:
        y += tl.load(D_ptr + h).to(tl.float32) * x
    tl.store(y_ptr + (b * H + h) * P + p, y.to(y_ptr.dtype.element_ty), mask=p_ok)
    out = ((b * H + h) * P + p[:, None]) * N + n[None, :]
    tl.store(S_out_ptr + out, S, mask=pn_ok)
    tl.store(I_out_ptr + out, I, mask=pn_ok)


def learned_sink_matrix(sink_k: torch.Tensor, sink_v: torch.Tensor, nheads: int) -> torch.Tensor:
    """``K_h = sum_s v_{s,h} k_{s,g(h)}^T``: (S, G, N), (S, H, P) -> (H, P, N) float32."""
    G = sink_k.shape[1]
    k_heads = sink_k.float().repeat_interleave(nheads // G, dim=1)  # (S, H, N)
    return torch.einsum("shp,shn->hpn", sink_v.float(), k_heads).contiguous()


_SINK_MATRICES = TensorCache()


def _or(t: torch.Tensor | None, other: torch.Tensor) -> torch.Tensor:
    return t if t is not None else other


class SsdStepFunction(torch.autograd.Function):
    """The decode step in Triton; its backward (decoding rarely needs one) differentiates the
    PyTorch reference of the same step."""

    @staticmethod
    @on_input_device
    def forward(ctx, x, dt, A, B, C, D, dt_bias, sink_k, sink_v, gain, ssm, init_sink, seen,
                opt: dict):  # fmt: skip
        b, H, P = x.shape
        G, N = B.shape[-2:]
        Kmat = None
        if sink_k is not None:  # formed once per (sink_k, sink_v), not per token
            Kmat = _SINK_MATRICES.get(
                (sink_k, sink_v), (H,), lambda: learned_sink_matrix(sink_k, sink_v, H)
            )
        y = new_buffer(b, H, P, device=x.device, dtype=x.dtype)
        S_new = new_buffer(b, H, P, N, device=x.device, dtype=torch.float32)
        I_new = new_buffer(b, H, P, N, device=x.device, dtype=torch.float32)
        block_p = min(next_power_of_2(P, 16), 32)
        ssd_step_kernel[(b * H, triton.cdiv(P, block_p))](
            x, dt, A, B, C, _or(D, A), _or(dt_bias, A), _or(Kmat, A), _or(gain, A), seen,
            ssm, init_sink, y, S_new, I_new,
            H, H // G, P, N, opt["n_init"], float(opt["dt_limit"][0]), float(opt["dt_limit"][1]),
            *x.stride(), *dt.stride(), *B.stride(), *C.stride(), *ssm.stride(),
            *init_sink.stride(),
            BLOCK_P=block_p, BLOCK_N=next_power_of_2(N, 16), HAS_D=D is not None,
            HAS_BIAS=dt_bias is not None, SOFTPLUS=opt["dt_softplus"], HAS_K=Kmat is not None,
            HAS_GAIN=gain is not None, num_warps=8 if for_gpu(x) else 4,
        )  # fmt: skip
        ctx.save_for_backward(x, dt, A, B, C, D, dt_bias, sink_k, sink_v, gain, ssm, init_sink)
        ctx.seen = seen
        ctx.opt = opt
        return y, S_new, I_new

    @staticmethod
    def backward(ctx, dy, dS, dI):
        tensors = list(ctx.saved_tensors)
        seen, opt = ctx.seen, ctx.opt

        def step(x, dt, A, B, C, D, dt_bias, sink_k, sink_v, gain, ssm, init_sink):
            y, st = ssd_step_reference(
                x, dt, A, B, C, D, state=ScanState(ssm, init_sink, seen), dt_bias=dt_bias,
                sink_k=sink_k, sink_v=sink_v, sink_gain=gain, **opt,
            )  # fmt: skip
            return y, st.ssm, st.init_sink

        grads = grads_through_reference(
            step, tensors, list(ctx.needs_input_grad[:12]), [dy, dS, dI]
        )
        return (*grads, None, None)


def ssd_step_triton(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    *,
    state: ScanState,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = True,
    dt_limit: tuple[float, float] = (0.0, math.inf),
    sink_k: torch.Tensor | None = None,
    sink_v: torch.Tensor | None = None,
    sink_gain: torch.Tensor | None = None,
    n_init: int = 0,
) -> tuple[torch.Tensor, ScanState]:
    """Arguments as :func:`gfssm.kernels.ssd_step` (already validated)."""
    opt = dict(dt_softplus=dt_softplus, dt_limit=dt_limit, n_init=n_init)
    y, ssm, init_sink = SsdStepFunction.apply(
        x, dt, A, B, C, D, dt_bias, sink_k, sink_v, sink_gain, state.ssm, state.init_sink,
        state.seen, opt,
    )  # fmt: skip
    return y, ScanState(ssm=ssm, init_sink=init_sink, seen=state.seen + 1)
