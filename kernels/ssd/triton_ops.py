"""Launchers and autograd wrappers of the Triton scan (spec sections 3 and 5).

Imported lazily by :func:`gfssm.kernels.ssd_scan` / :func:`gfssm.kernels.ssd_step` when the
dispatch selects Triton. The learned sink enters the kernels as its dense per-head matrix
``K_h = sum_s v_{s,h} k_{s,g}^T`` (H, P, N), formed here with plain tensor ops so autograd
carries its gradient back to ``sink_k`` and ``sink_v``; likewise the initial state is cast to
float32 outside the autograd function.

Passes, forward: ``ssd_forward_kernel`` (one launch). Backward: the same kernel recomputes
the chunk-start states, ``ssd_state_grad_kernel`` carries the adjoint states backwards, and
``ssd_chunk_bwd_kernel`` forms every gradient chunk by chunk; small per-(row, chunk, head)
partials of dA, dD, d gain and d dt_bias are summed here.
"""

from __future__ import annotations

import math

import torch
import triton

from gfssm.kernels.ssd import triton_chunk_bwd, triton_scan, triton_step
from gfssm.kernels.ssd.step import ssd_step_reference
from gfssm.kernels.ssd.triton_meta import ScanLayout, scan_layout
from gfssm.kernels.state import ScanState
from gfssm.kernels.triton_support import (
    fp32_dot_precision,
    grads_through_reference,
    new_buffer,
    next_power_of_2,
)

BUILT_INTERPRETED = triton_scan.BUILT_INTERPRETED
MIN_CHUNK, MAX_CHUNK = 16, 128


def kernel_chunk(chunk_size: int) -> int:
    """The chunk length the kernels use: ``tl.dot`` needs 16 rows, and the backward's
    (Q, Q) tiles stop fitting in registers past 128. The result does not depend on it."""
    return min(max(chunk_size, MIN_CHUNK), MAX_CHUNK)


def _dot_precision(dtype: torch.dtype) -> str:
    """float32 inputs keep float32 accuracy (3 TF32 passes); half-precision inputs run
    their own dots in half precision and the float32 state dots in TF32."""
    prec = fp32_dot_precision()
    return "tf32x3" if prec == "tf32" and dtype == torch.float32 else prec


class _Options:
    """Non-tensor arguments of one scan call, shared by its forward and backward."""

    def __init__(self, *, layout: ScanLayout, heads_per_group: int, n_init: int,
                 dt_limit: tuple[float, float], dt_softplus: bool, track_init: bool,
                 return_final: bool):  # fmt: skip
        self.layout = layout
        self.hpg = heads_per_group
        self.n_init = n_init
        self.lo, self.hi = float(dt_limit[0]), float(dt_limit[1])
        self.softplus = dt_softplus
        self.track_init = track_init
        self.return_final = return_final
        self.ni = next_power_of_2(n_init, minimum=16)  # rows of the initial-token tiles
        self.slots = max(n_init, 1)


def _or(t: torch.Tensor | None, other: torch.Tensor) -> torch.Tensor:
    """A placeholder pointer for an absent optional tensor (the kernel never reads it)."""
    return t if t is not None else other


def _int_args(layout: ScanLayout, like: torch.Tensor):
    dummy = torch.zeros(1, device=like.device, dtype=torch.int32)
    return _or(layout.seg, dummy), _or(layout.pos, dummy), _or(layout.chunks, dummy)


class SsdScanFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dt, A, B, C, D, dt_bias, Kmat, gain, S0, I0, opt: _Options):
        b, L, H, P = x.shape
        G, N = B.shape[-2:]
        lay = opt.layout
        seg, pos, chunks = _int_args(lay, x)
        y = new_buffer(b, L, H, P, device=x.device, dtype=x.dtype)
        finals = [None, None]
        if opt.return_final:
            finals = [new_buffer(b, H, P, N, device=x.device, dtype=torch.float32)
                      for _ in range(2)]  # fmt: skip
            if not opt.track_init:
                finals[1].zero_()
        triton_scan.ssd_forward_kernel[lambda m: (b * H, triton.cdiv(P, m["BLOCK_P"]))](
            x, dt, A, B, C, _or(D, A), _or(dt_bias, A), _or(Kmat, A), _or(gain, A),
            seg, pos, chunks, _or(S0, A), _or(I0, A),
            y, _or(finals[0], A), _or(finals[1], A), A,
            L, lay.nchunks, H, opt.hpg, P, N, opt.n_init, opt.lo, opt.hi,
            *x.stride(), *dt.stride(), *B.stride(), *C.stride(), *y.stride(),
            Q=lay.chunk, BLOCK_N=next_power_of_2(N, 16), NI=opt.ni,
            HAS_D=D is not None, HAS_BIAS=dt_bias is not None, SOFTPLUS=opt.softplus,
            HAS_SEQ=lay.seg is not None, HAS_K=Kmat is not None, HAS_GAIN=gain is not None,
            TRACK_I=opt.track_init, HAS_S0=S0 is not None, HAS_I0=I0 is not None,
            WRITE_Y=True, WRITE_FINAL=opt.return_final, STORE_STATES=False,
            DOT_PREC=_dot_precision(x.dtype),
        )  # fmt: skip
        ctx.save_for_backward(x, dt, A, B, C, D, dt_bias, Kmat, gain, S0, I0)
        ctx.opt = opt
        return y, finals[0], finals[1]

    @staticmethod
    def backward(ctx, dy, dS_final, dI_final):
        x, dt, A, B, C, D, dt_bias, Kmat, gain, S0, I0 = ctx.saved_tensors
        opt: _Options = ctx.opt
        lay = opt.layout
        b, L, H, P = x.shape
        G, N = B.shape[-2:]
        nc, Q = lay.nchunks, lay.chunk
        dev, f32 = x.device, torch.float32
        seg, pos, chunks = _int_args(lay, x)
        common = dict(Q=Q, BLOCK_N=next_power_of_2(N, 16), DOT_PREC=_dot_precision(x.dtype))
        flags = dict(HAS_BIAS=dt_bias is not None, SOFTPLUS=opt.softplus,
                     HAS_SEQ=lay.seg is not None)  # fmt: skip
        strides = (*x.stride(), *dt.stride(), *B.stride(), *C.stride())

        def seq_grid(m):
            return (b * H, triton.cdiv(P, m["BLOCK_P"]))

        states = new_buffer(b, H, nc, P, N, device=dev, dtype=f32)
        triton_scan.ssd_forward_kernel[seq_grid](
            x, dt, A, B, C, A, _or(dt_bias, A), A, A, seg, pos, chunks, _or(S0, A), A,
            A, A, A, states,
            L, nc, H, opt.hpg, P, N, opt.n_init, opt.lo, opt.hi, *strides, 0, 0, 0, 0,
            NI=opt.ni, HAS_D=False, HAS_K=False, HAS_GAIN=False, TRACK_I=False,
            HAS_S0=S0 is not None, HAS_I0=False, WRITE_Y=False, WRITE_FINAL=False,
            STORE_STATES=True, **flags, **common,
        )  # fmt: skip

        grad_states = new_buffer(b, H, nc, P, N, device=dev, dtype=f32)
        dS0 = new_buffer(b, H, P, N, device=dev, dtype=f32)
        dI0 = new_buffer(b, H, P, N, device=dev, dtype=f32) if opt.track_init else A
        dK = new_buffer(b, H, P, N, device=dev, dtype=f32) if Kmat is not None else A
        track = opt.track_init
        # Slots are zeroed by the autotuner between trials: never alias them with inputs.
        slot_shape = (b, nc, opt.slots) if track else (1, 1, 1)
        slot_dx = new_buffer(*slot_shape, H, P, device=dev, dtype=f32)
        slot_dd = torch.zeros(*slot_shape, H, device=dev, dtype=f32)
        slot_dB = torch.zeros(*slot_shape, G, N, device=dev, dtype=f32)
        triton_scan.ssd_state_grad_kernel[seq_grid](
            x, dt, A, B, C, _or(dt_bias, A), _or(gain, A), seg, chunks, dy,
            _or(dS_final, A), _or(dI_final, A),
            grad_states, dS0, dI0, dK, slot_dx, slot_dd, slot_dB,
            L, nc, H, G, opt.hpg, P, N, opt.lo, opt.hi, opt.slots, *strides, *dy.stride(),
            NI=opt.ni, HAS_K=Kmat is not None, HAS_GAIN=gain is not None, TRACK_I=track,
            HAS_DSF=dS_final is not None, HAS_DIF=dI_final is not None and track,
            **flags, **common,
        )  # fmt: skip

        dx = new_buffer(b, L, H, P, device=dev, dtype=x.dtype)
        ddt = new_buffer(b, L, H, device=dev, dtype=dt.dtype)
        dB = new_buffer(b, L, G, N, device=dev, dtype=B.dtype)
        dC = new_buffer(b, L, G, N, device=dev, dtype=C.dtype)
        part = new_buffer(4, b, nc, H, device=dev, dtype=f32)
        triton_chunk_bwd.ssd_chunk_bwd_kernel[(nc, b * G)](
            x, dt, A, B, C, _or(D, A), _or(dt_bias, A), _or(Kmat, A), _or(gain, A),
            seg, pos, chunks, _or(I0, A), dy, states, grad_states, slot_dx, slot_dd, slot_dB,
            dx, ddt, dB, dC, part,
            b, L, nc, H, G, opt.hpg, P, N, opt.n_init, opt.lo, opt.hi, opt.slots,
            *strides, *dy.stride(),
            BLOCK_P=next_power_of_2(P, 16), NI=opt.ni, HAS_D=D is not None,
            HAS_K=Kmat is not None, HAS_GAIN=gain is not None, TRACK_I=track,
            HAS_I0=I0 is not None and track, **flags, **common,
        )  # fmt: skip
        sums = part.sum(dim=(1, 2))  # (4, H)
        return (
            dx,
            ddt,
            sums[0].to(A.dtype),
            dB,
            dC,
            sums[1].to(D.dtype) if D is not None else None,
            sums[3].to(dt_bias.dtype) if dt_bias is not None else None,
            dK.sum(0) if Kmat is not None else None,
            sums[2].to(gain.dtype) if gain is not None else None,
            dS0 if S0 is not None else None,
            dI0 if I0 is not None and track else None,
            None,
        )


def learned_sink_matrix(sink_k: torch.Tensor, sink_v: torch.Tensor, nheads: int) -> torch.Tensor:
    """``K_h = sum_s v_{s,h} k_{s,g(h)}^T``: (S, G, N), (S, H, P) -> (H, P, N) float32."""
    G = sink_k.shape[1]
    k_heads = sink_k.float().repeat_interleave(nheads // G, dim=1)  # (S, H, N)
    return torch.einsum("shp,shn->hpn", sink_v.float(), k_heads).contiguous()


def ssd_scan_triton(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    *,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = True,
    dt_limit: tuple[float, float] = (0.0, math.inf),
    chunk_size: int = 64,
    sink_k: torch.Tensor | None = None,
    sink_v: torch.Tensor | None = None,
    sink_gain: torch.Tensor | None = None,
    n_init: int = 0,
    seq_idx: torch.Tensor | None = None,
    initial_state: ScanState | None = None,
    return_final_state: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, ScanState]:
    """Arguments as :func:`gfssm.kernels.ssd_scan` (already validated)."""
    b, L, H, P = x.shape
    G = B.shape[-2]
    seen = initial_state.seen if initial_state is not None else None
    track_init = (n_init > 0 or initial_state is not None) and (
        sink_gain is not None or return_final_state
    )
    layout = scan_layout(
        seq_idx, b, L, kernel_chunk(chunk_size), n_init if track_init else 0, x.device, seen
    )
    if track_init and layout.chunks is None:  # initial sink but no initial tokens
        zeros = torch.zeros(b, layout.nchunks, 4, device=x.device, dtype=torch.int32)
        pos = torch.zeros(b, L, device=x.device, dtype=torch.int32)
        layout = ScanLayout(L, layout.chunk, layout.nchunks, layout.seg, pos, zeros, layout.seen)
    opt = _Options(
        layout=layout,
        heads_per_group=H // G,
        n_init=n_init,
        dt_limit=dt_limit,
        dt_softplus=dt_softplus,
        track_init=track_init,
        return_final=return_final_state,
    )
    Kmat = learned_sink_matrix(sink_k, sink_v, H) if sink_k is not None else None
    S0 = I0 = None
    if initial_state is not None:
        S0 = initial_state.ssm.to(torch.float32).contiguous()
        I0 = initial_state.init_sink.to(torch.float32).contiguous() if track_init else None
    y, S_final, I_final = SsdScanFunction.apply(
        x, dt, A, B, C, D, dt_bias, Kmat, sink_gain, S0, I0, opt
    )
    if not return_final_state:
        return y
    return y, ScanState(ssm=S_final, init_sink=I_final, seen=layout.seen)


class SsdStepFunction(torch.autograd.Function):
    """The decode step in Triton; its backward (decoding rarely needs one) differentiates the
    PyTorch reference of the same step."""

    @staticmethod
    def forward(ctx, x, dt, A, B, C, D, dt_bias, sink_k, sink_v, gain, ssm, init_sink, seen,
                opt: dict):  # fmt: skip
        b, H, P = x.shape
        G, N = B.shape[-2:]
        Kmat = learned_sink_matrix(sink_k, sink_v, H) if sink_k is not None else None
        y = new_buffer(b, H, P, device=x.device, dtype=x.dtype)
        S_new = new_buffer(b, H, P, N, device=x.device, dtype=torch.float32)
        I_new = new_buffer(b, H, P, N, device=x.device, dtype=torch.float32)
        block_p = min(next_power_of_2(P, 16), 64)
        triton_step.ssd_step_kernel[(b * H, triton.cdiv(P, block_p))](
            x, dt, A, B, C, _or(D, A), _or(dt_bias, A), _or(Kmat, A), _or(gain, A), seen,
            ssm, init_sink, y, S_new, I_new,
            H, H // G, P, N, opt["n_init"], float(opt["dt_limit"][0]), float(opt["dt_limit"][1]),
            *x.stride(), *dt.stride(), *B.stride(), *C.stride(), *ssm.stride(),
            *init_sink.stride(),
            BLOCK_P=block_p, BLOCK_N=next_power_of_2(N, 16), HAS_D=D is not None,
            HAS_BIAS=dt_bias is not None, SOFTPLUS=opt["dt_softplus"], HAS_K=Kmat is not None,
            HAS_GAIN=gain is not None,
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
