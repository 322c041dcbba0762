"""Launchers and the autograd wrapper of the Triton scan (spec sections 3 and 5).

Imported lazily by :func:`gfssm.kernels.ssd_scan` / :func:`gfssm.kernels.ssd_step` when the
dispatch selects Triton.

Passes. Forward: ``ssd_chunk_cb_kernel`` forms the products every head of a group shares
(``C B^T``, ``C k^T``, ``C B^T`` against earlier initial tokens), then ``ssd_forward_kernel``
walks the chunks. Backward: the same kernel recomputes the chunk-start states (one per
chunk, stored in the input dtype), ``ssd_state_grad_kernel`` carries the adjoint states
backwards, ``ssd_chunk_bwd_dx_kernel`` and ``ssd_chunk_bwd_dbc_kernel`` form every gradient
chunk by chunk; small per-(row, chunk, head) partials (dA, dD, d gain, d dt_bias, d sink_v,
d sink_k) are summed here. Where b*H is too small to fill the GPU, the chunk-parallel
schedule (``triton_chunked``) replaces the sequential walks: chunk states (forward,
recompute) and adjoints (backward) in parallel over chunks with a cheap pass between, and
the forward kernel writes one chunk per program. The final initial-token sink (at most
``n_init`` tokens of each row's last sequence, plus the initial sink) is a handful of
gathered rows, computed with tensor ops so autograd differentiates it.

Bytes moved per kernel at the benchmark shape and the HBM-bound times, and the registers,
spills and shared memory of every config: ``kernels/README.md`` and
``python -m gfssm.kernels.triton_compile_check``. Memory: y, the final state and the shared
products in the forward; the stored states and adjoints, (b, H, L/Q, P, N) each in the input
dtype, during the backward (4x the bytes of x at Q=64, N=128, P=64).
"""

from __future__ import annotations

import math

import torch
import triton

from gfssm.kernels.ssd import triton_chunk_bwd, triton_chunked, triton_scan
from gfssm.kernels.ssd.reference import discretize
from gfssm.kernels.ssd.segments import Segments
from gfssm.kernels.ssd.triton_meta import ScanLayout, scan_layout
from gfssm.kernels.ssd.triton_step import ssd_step_triton
from gfssm.kernels.state import ScanState
from gfssm.kernels.triton_support import (
    TensorCache,
    fp32_dot_precision,
    new_buffer,
    next_power_of_2,
    on_input_device,
)

BUILT_INTERPRETED = triton_scan.BUILT_INTERPRETED
MIN_CHUNK, MAX_CHUNK = 16, 64
__all__ = ["ssd_scan_triton", "ssd_step_triton"]
_LAYOUTS = TensorCache()


def kernel_chunk(chunk_size: int) -> int:
    """The chunk length the kernels use: ``tl.dot`` needs 16 rows, and at Q=128 the (Q, Q)
    tiles of the forward and of both chunk-backward kernels spill (0.3-5 KB per thread at
    bf16, N=128; 6-10 KB at fp32), so Q is at most 64. The result does not depend on it."""
    return min(max(chunk_size, MIN_CHUNK), MAX_CHUNK)


def checkpoint_stride(chunk: int, nchunks: int) -> int:
    """Chunks per stored state in the backward: 1. The kernels take a STRIDE (one stored
    state per STRIDE chunks), but recomputing the others inside the chunk-backward kernels
    cost the registers that made them spill; the resource check measures both."""
    return 1


def size_class(rows_heads: int, nchunks: int) -> int:
    """Autotune key of the sequential kernels: how many (row, head) pairs run in parallel and
    how many chunks each walks, by powers of two. Their best block of P depends on both
    (few pairs want small blocks, to fill the GPU), so one length no longer picks the
    config for all, while lengths of the same magnitude share one tuning."""
    return 100 * int(rows_heads).bit_length() + int(nchunks).bit_length()


def dot_precision(dtype: torch.dtype) -> str:
    """float32 inputs keep float32 accuracy on a GPU (3-pass TF32); half-precision inputs
    use their own dtype for the dot operands (fp32 accumulation)."""
    prec = fp32_dot_precision()
    return "tf32x3" if prec == "tf32" and dtype == torch.float32 else prec


class _Options:
    """Non-tensor arguments of one scan call, shared by its forward and backward."""

    def __init__(self, *, layout: ScanLayout, heads_per_group: int, n_init: int,
                 dt_limit: tuple[float, float], dt_softplus: bool, has_init: bool):  # fmt: skip
        self.layout = layout
        self.hpg = heads_per_group
        self.n_init = n_init
        self.lo, self.hi = float(dt_limit[0]), float(dt_limit[1])
        self.softplus = dt_softplus
        self.has_init = has_init  # initial tokens read through a gain
        self.ni = next_power_of_2(n_init, minimum=16)  # rows of the initial-token tiles
        self.slots = max(n_init, 1)

    def chunked(self, batch_heads: int, headdim: int, device: torch.device) -> bool:
        """The chunk-parallel schedule (see ``triton_chunked.schedule``)."""
        nc = self.layout.nchunks
        return triton_chunked.schedule(batch_heads, headdim, nc, device) == "chunked"


def _or(t: torch.Tensor | None, other: torch.Tensor) -> torch.Tensor:
    """A placeholder pointer for an absent optional tensor (the kernel never reads it)."""
    return t if t is not None else other


class SsdScanFunction(torch.autograd.Function):
    @staticmethod
    @on_input_device
    def forward(ctx, x, dt, A, B, C, D, dt_bias, sink_k, sink_v, gain, S0, I0, opt: _Options):
        b, L, H, P = x.shape
        G, N = B.shape[-2:]
        lay = opt.layout
        n_sink = sink_k.shape[0] if sink_k is not None else 0
        dummy = torch.zeros(1, device=x.device, dtype=torch.int32)
        y = new_buffer(b, L, H, P, device=x.device, dtype=x.dtype)
        S_final = new_buffer(b, H, P, N, device=x.device, dtype=torch.float32)
        SP = next_power_of_2(n_sink, 16)
        group_chunks = (b, lay.nchunks, G, lay.chunk)
        cb = new_buffer(*group_chunks, lay.chunk, device=x.device, dtype=torch.float32)
        kc = new_buffer(*group_chunks, SP, device=x.device, dtype=torch.float32) if n_sink else cb
        cbp = (
            new_buffer(*group_chunks, opt.ni, device=x.device, dtype=torch.float32)
            if opt.has_init
            else cb
        )
        triton_scan.ssd_chunk_cb_kernel[(lay.nchunks, b * G)](
            B, C, _or(sink_k, A), _or(lay.chunks, dummy), cb, kc, cbp, L, lay.nchunks, G, N,
            n_sink, *B.stride(), *C.stride(),
            Q=lay.chunk, BLOCK_N=next_power_of_2(N, 16), NI=opt.ni, SP=SP,
            HAS_SINK=n_sink > 0, HAS_INIT=opt.has_init, DOT_PREC=dot_precision(x.dtype),
            num_warps=4,
        )  # fmt: skip
        seg = _or(lay.seg, dummy)
        chunked = opt.chunked(b * H, P, x.device)
        states = A
        if chunked:  # chunk states in parallel, a cheap pass, then every chunk's y
            states, _, S_final = triton_chunked.chunk_states(
                x, dt, A, B, dt_bias, seg, S0, nc=lay.nchunks, Q=lay.chunk, hpg=opt.hpg,
                lo=opt.lo, hi=opt.hi, softplus=opt.softplus, has_seq=lay.seg is not None,
                dot_prec=dot_precision(x.dtype),
            )  # fmt: skip

        def grid(m):
            p_blocks = triton.cdiv(P, m["BLOCK_P"])
            return (lay.nchunks, b * H, p_blocks) if chunked else (b * H, p_blocks)

        triton_scan.ssd_forward_kernel[grid](
            x, dt, A, B, C, _or(D, A), _or(dt_bias, A), _or(sink_k, A), _or(sink_v, A),
            _or(gain, A), seg, _or(lay.pos, dummy), _or(lay.chunks, dummy),
            _or(S0, A), _or(I0, A), cb, kc, cbp, y, S_final, states,
            L, lay.nchunks, H, G, opt.hpg, P, N, n_sink, opt.n_init, opt.lo, opt.hi,
            size_class(b * H, lay.nchunks),
            *x.stride(), *dt.stride(), *B.stride(), *C.stride(), *y.stride(),
            Q=lay.chunk, BLOCK_N=next_power_of_2(N, 16), NI=opt.ni,
            SP=SP, HAS_D=D is not None, HAS_BIAS=dt_bias is not None,
            SOFTPLUS=opt.softplus, HAS_SEQ=lay.seg is not None, HAS_SINK=n_sink > 0,
            HAS_INIT=opt.has_init, HAS_S0=S0 is not None and not chunked,
            HAS_I0=I0 is not None, WRITE_Y=True, WRITE_FINAL=not chunked, STORE_STATES=False,
            STRIDE=1, CHUNKED=chunked, DOT_PREC=dot_precision(x.dtype),
        )  # fmt: skip
        del states  # (freed here: the backward recomputes them)
        ctx.save_for_backward(x, dt, A, B, C, D, dt_bias, sink_k, sink_v, gain, S0, I0, cb, kc, cbp)
        ctx.opt = opt
        return y, S_final

    @staticmethod
    @on_input_device
    def backward(ctx, dy, dS_final):
        x, dt, A, B, C, D, dt_bias, sink_k, sink_v, gain, S0, I0, cb, kc, cbp = ctx.saved_tensors
        opt: _Options = ctx.opt
        lay = opt.layout
        b, L, H, P = x.shape
        G, N = B.shape[-2:]
        nc = lay.nchunks
        n_sink = sink_k.shape[0] if sink_k is not None else 0
        SP = next_power_of_2(n_sink, 16)
        dev, f32 = x.device, torch.float32
        dummy = torch.zeros(1, device=dev, dtype=torch.int32)
        seg, pos, chunks = (_or(t, dummy) for t in (lay.seg, lay.pos, lay.chunks))
        common = dict(Q=lay.chunk, BLOCK_N=next_power_of_2(N, 16), NI=opt.ni,
                      DOT_PREC=dot_precision(x.dtype), HAS_BIAS=dt_bias is not None,
                      SOFTPLUS=opt.softplus, HAS_SEQ=lay.seg is not None)  # fmt: skip
        strides = (*x.stride(), *dt.stride(), *B.stride(), *C.stride())

        track_gi = gain is not None and (opt.has_init or I0 is not None)
        slots = opt.has_init
        # Initial-token slots, written per head by plain stores (no atomics: deterministic).
        slot_shape = (b, nc, opt.slots) if slots else (1, 1, 1)
        slot_dx = new_buffer(*slot_shape, H, P, device=dev, dtype=f32)
        slot_dd = new_buffer(*slot_shape, H, device=dev, dtype=f32)
        slot_dB = new_buffer(*slot_shape, H, N, device=dev, dtype=f32)
        if opt.chunked(b * H, P, dev):
            # Chunk states and adjoints in parallel over chunks, then a pass over them.
            flags = dict(nc=nc, Q=lay.chunk, hpg=opt.hpg, lo=opt.lo, hi=opt.hi,
                         softplus=opt.softplus, has_seq=lay.seg is not None,
                         dot_prec=dot_precision(x.dtype))  # fmt: skip
            states, decay, _ = triton_chunked.chunk_states(x, dt, A, B, dt_bias, seg, S0, **flags)
            grad_states, dS0, dI0 = triton_chunked.chunk_grad_states(
                x, dt, A, B, C, dt_bias, gain, seg, chunks, dy, dS_final, decay,
                (slot_dx, slot_dd, slot_dB) if slots else None,
                track_gi=track_gi, ni=opt.ni, nslot=opt.slots, **flags,
            )  # fmt: skip
        else:
            states, grad_states, dS0, dI0 = _sequential_states(
                x, dt, A, B, C, dt_bias, gain, S0, dy, dS_final, slot_dx, slot_dd, slot_dB,
                opt, track_gi, common, strides,
            )  # fmt: skip

        dx = new_buffer(b, L, H, P, device=dev, dtype=x.dtype)
        ddt = new_buffer(b, L, H, device=dev, dtype=dt.dtype)
        dB = new_buffer(b, L, G, N, device=dev, dtype=B.dtype)
        dC = new_buffer(b, L, G, N, device=dev, dtype=C.dtype)
        part = new_buffer(4, b, nc, H, device=dev, dtype=f32)
        sink_shape = (b, nc) if n_sink else (1, 1)
        dsv = new_buffer(*sink_shape, H, SP, P, device=dev, dtype=f32)
        dsk = new_buffer(*sink_shape, SP, G, N, device=dev, dtype=f32)
        chunk_args = {k: v for k, v in common.items() if k != "BLOCK_N"}
        chunk_args.update(
            BLOCK_P=next_power_of_2(P, 16),
            SP=SP,
            HAS_SINK=n_sink > 0,
            HAS_INIT=opt.has_init,
            HAS_I0=I0 is not None,
            HAS_SLOTS=slots,
        )
        triton_chunk_bwd.ssd_chunk_bwd_dx_kernel[(nc, b * H)](
            x, dt, A, B, C, _or(D, A), _or(dt_bias, A), _or(sink_k, A), _or(sink_v, A),
            _or(gain, A), seg, pos, chunks, _or(I0, A), dy, cb, kc, cbp, states, grad_states,
            slot_dx, slot_dd, dx, ddt, part, dsv,
            b, L, nc, H, G, opt.hpg, P, N, n_sink, opt.n_init, opt.lo, opt.hi, opt.slots,
            *strides, *dy.stride(), HAS_D=D is not None, **chunk_args,
        )  # fmt: skip
        triton_chunk_bwd.ssd_chunk_bwd_dbc_kernel[
            lambda m: (nc, b * G, triton.cdiv(N, m["BLOCK_N"]))
        ](
            x, dt, A, B, C, _or(dt_bias, A), _or(sink_k, A), _or(sink_v, A), _or(gain, A),
            seg, pos, chunks, _or(I0, A), dy, states, grad_states, slot_dB, dB, dC, dsk,
            L, nc, H, G, opt.hpg, P, N, n_sink, opt.n_init, opt.lo, opt.hi, opt.slots,
            *strides, *dy.stride(), **chunk_args,
        )  # fmt: skip
        sums = part.sum(dim=(1, 2))  # (4, H)
        d_sink_k = d_sink_v = None
        if n_sink:
            d_sink_v = dsv[:, :, :, :n_sink].sum((0, 1)).transpose(0, 1).to(sink_v.dtype)
            d_sink_k = dsk[:, :, :n_sink].sum((0, 1)).to(sink_k.dtype)
        return (
            dx,
            ddt,
            sums[0].to(A.dtype),
            dB,
            dC,
            sums[1].to(D.dtype) if D is not None else None,
            sums[3].to(dt_bias.dtype) if dt_bias is not None else None,
            d_sink_k,
            d_sink_v,
            sums[2].to(gain.dtype) if gain is not None else None,
            dS0 if S0 is not None else None,
            dI0 if I0 is not None and track_gi else None,
            None,
        )


def _sequential_states(
    x, dt, A, B, C, dt_bias, gain, S0, dy, dS_final, slot_dx, slot_dd, slot_dB,
    opt: _Options, track_gi: bool, common: dict, strides: tuple,
):  # fmt: skip
    """The fused schedule's backward state passes: the chunk-start states recomputed and
    the chunk-end adjoints, (b, H, nc, P, N) in the input dtype, dL/dS0 and dL/dI0."""
    lay = opt.layout
    b, L, H, P = x.shape
    G, N = B.shape[-2:]
    nc = lay.nchunks
    R = checkpoint_stride(lay.chunk, nc)
    dev, f32 = x.device, torch.float32
    dummy = torch.zeros(1, device=dev, dtype=torch.int32)
    seg, pos, chunks = (_or(t, dummy) for t in (lay.seg, lay.pos, lay.chunks))

    def seq_grid(m):
        return (b * H, triton.cdiv(P, m["BLOCK_P"]))

    # The stored states and adjoints are read only as dot operands, rounded to the input
    # dtype: stored in it (half the bytes of fp32 at bf16/fp16, the same results).
    states = new_buffer(b, H, triton.cdiv(nc, R), P, N, device=dev, dtype=x.dtype)
    triton_scan.ssd_forward_kernel[seq_grid](
        x, dt, A, B, C, A, _or(dt_bias, A), A, A, A, seg, pos, chunks, _or(S0, A), A,
        A, A, A, A, A, states,
        L, nc, H, G, opt.hpg, P, N, 0, opt.n_init, opt.lo, opt.hi, size_class(b * H, nc),
        *strides, 0, 0, 0, 0,
        SP=16, HAS_D=False, HAS_SINK=False, HAS_INIT=False, HAS_S0=S0 is not None,
        HAS_I0=False, WRITE_Y=False, WRITE_FINAL=False, STORE_STATES=True, STRIDE=R,
        CHUNKED=False, **common,
    )  # fmt: skip

    slots = opt.has_init
    grad_states = new_buffer(b, H, triton.cdiv(nc, R), P, N, device=dev, dtype=x.dtype)
    dS0 = new_buffer(b, H, P, N, device=dev, dtype=f32)
    dI0 = new_buffer(b, H, P, N, device=dev, dtype=f32)
    state_grad, whole_p = triton_scan.ssd_state_grad_kernel, {}
    if slots:
        state_grad = triton_scan.ssd_state_grad_whole_p_kernel
        whole_p = dict(BLOCK_P=next_power_of_2(P, 16))
    state_grad[seq_grid](
        x, dt, A, B, C, _or(dt_bias, A), _or(gain, A), seg, chunks, dy,
        _or(dS_final, A), grad_states, dS0, dI0, slot_dx, slot_dd, slot_dB,
        L, nc, H, G, opt.hpg, P, N, opt.lo, opt.hi, opt.slots, size_class(b * H, nc),
        *strides, *dy.stride(),
        TRACK_GI=track_gi, HAS_SLOTS=slots, HAS_DSF=dS_final is not None, STRIDE=R,
        **common, **whole_p,
    )  # fmt: skip
    return states, grad_states, dS0, dI0


def final_init_sink(
    segs: Segments, x, dt, B, *, dt_bias, dt_softplus, dt_limit, n_init, I0
) -> torch.Tensor:
    """``I`` after each row (b, H, P, N) float32: the initial tokens of the row's last
    sequence, plus the initial sink when the row holds one sequence."""
    b, L, H, P = x.shape
    G, N = B.shape[-2:]
    keep = (segs.ids[:, -1] == 0).view(b, 1, 1, 1)
    sink = I0 * keep if I0 is not None else x.new_zeros(b, H, P, N, dtype=torch.float32)
    if n_init == 0:
        return sink
    idx = segs.start[:, -1:] + torch.arange(n_init, device=x.device)  # (b, n_init)
    idx_c = idx.clamp(max=L - 1)
    valid = (idx < L) & (torch.gather(segs.pos, 1, idx_c) < n_init)
    dt_i = torch.gather(dt, 1, idx_c[..., None].expand(-1, -1, H))
    d_i = discretize(dt_i, dt_bias, dt_softplus, dt_limit, torch.float32) * valid[..., None]
    x_i = torch.gather(x, 1, idx_c[..., None, None].expand(-1, -1, H, P)).float()
    B_i = torch.gather(B, 1, idx_c[..., None, None].expand(-1, -1, G, N)).float()
    B_h = B_i.repeat_interleave(H // G, dim=2)
    return sink + torch.einsum("bkh,bkhp,bkhn->bhpn", d_i, x_i, B_h)


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
    has_init = n_init > 0 and sink_gain is not None
    chunk, init = kernel_chunk(chunk_size), n_init if has_init else 0
    # Every layer of a model sees the same batch: its layout is formed once.
    layout = _LAYOUTS.get(
        (seq_idx, seen),
        (b, L, chunk, init, x.device),
        lambda: scan_layout(seq_idx, b, L, chunk, init, x.device, seen),
    )
    opt = _Options(
        layout=layout,
        heads_per_group=H // G,
        n_init=n_init,
        dt_limit=dt_limit,
        dt_softplus=dt_softplus,
        has_init=has_init,
    )
    S0 = I0 = None
    if initial_state is not None:
        S0 = initial_state.ssm.to(torch.float32).contiguous()
        I0 = initial_state.init_sink.to(torch.float32).contiguous()
    y, S_final = SsdScanFunction.apply(
        x, dt, A, B, C, D, dt_bias, sink_k, sink_v, sink_gain, S0,
        I0 if sink_gain is not None else None, opt,
    )  # fmt: skip
    if not return_final_state:
        return y
    I_final = final_init_sink(
        layout.segments, x, dt, B, dt_bias=dt_bias, dt_softplus=dt_softplus,
        dt_limit=dt_limit, n_init=n_init, I0=I0,
    )  # fmt: skip
    return y, ScanState(ssm=S_final, init_sink=I_final, seen=layout.seen)
