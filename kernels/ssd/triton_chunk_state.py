"""The chunk-parallel Triton kernels of the scan's state recurrence, for batches with few
(row, head) pairs: the sequential kernels of ``triton_scan`` then run too few programs to
fill a GPU (b*H*P/BLOCK_P of them, each walking all L/Q chunks), while here only a cheap
elementwise pass over the chunks is sequential.

- ``ssd_chunk_state_kernel``, one program per (chunk, row and head, block of P and N): the
  chunk's own contribution to the carried state, in parallel over all chunks. Forward: the
  state the chunk alone would leave, ``sum_sigma to_end_sigma x_sigma B_sigma^T`` over the
  rows of the sequence the chunk ends in, and the chunk's decay ``exp(l_last)`` (0 where a
  sequence starts inside it). Adjoint (backward): what the chunk adds to ``dL/dS`` at its
  start, ``sum_tau read_tau dy_tau C_tau^T``, and with TRACK_GI to ``dL/dI`` (the
  initial-token sink), ``gamma sum_tau dy_tau C_tau^T`` over the entering sequence.
- ``ssd_state_pass_kernel``, one program per (row and head, block of the flattened (P, N)):
  walks the chunks in order (or in reverse), replacing each chunk's contribution by the
  value entering it (``S <- decay_c S + contribution_c``); fp32, in place.
- ``ssd_init_slots_kernel``, one program per (chunk, row and head): from the stored
  ``dL/dI`` at each chunk's end, the gradients that reach the initial tokens of the chunk's
  last sequence through the sink (the slots the chunk-backward kernels add), as the
  sequential ``ssd_state_grad_kernel`` writes them.

The chunks' contributions are (b, H, nc, P, N) fp32; the passed values are stored in the
input dtype, like the sequential kernels' stored states (every reader uses them as dot
operands in that dtype), so results match the sequential path up to the order of fp32
sums.
"""

from __future__ import annotations

import triton
import triton.language as tl

from gfssm.kernels.ssd.triton_common import chunk_segments, discretize, load_rows
from gfssm.kernels.triton_support import (
    built_interpreted,
    one_config_when_interpreting,
    prune_by_shared_memory,
    shared_estimate,
)

BUILT_INTERPRETED = built_interpreted()

# Many programs already (nc of them per row and head): one block shape, two depths.
_STATE_CONFIGS = one_config_when_interpreting(
    [triton.Config({"BLOCK_P": 64, "BLOCK_N": 64}, num_warps=4, num_stages=s) for s in (1, 2)],
    triton.Config({"BLOCK_P": 16, "BLOCK_N": 16}, num_warps=4),
)
# A memory-latency-bound walk: stages keep several chunks' loads in flight.
_PASS_CONFIGS = one_config_when_interpreting(
    [triton.Config({"BLOCK": 256}, num_warps=4, num_stages=s) for s in (2, 4)],
    triton.Config({"BLOCK": 64}, num_warps=4),
)


@shared_estimate("ssd_chunk_state_kernel")
def _chunk_state_shared(k: dict) -> int:
    e, Q = k["elem"], k["Q"]
    return (e * Q * (k["BLOCK_P"] + 2 * k["BLOCK_N"])) * k["num_stages"]


@triton.autotune(
    configs=_STATE_CONFIGS,
    key=["P", "N", "Q", "HAS_SEQ", "ADJOINT", "TRACK_GI", "WRITE_DECAY"],
    prune_configs_by={"early_config_prune": prune_by_shared_memory("ssd_chunk_state_kernel")},
)
@triton.jit
def ssd_chunk_state_kernel(
    x_ptr, dt_ptr, A_ptr, B_ptr, bias_ptr, gain_ptr, seg_ptr, out_ptr, out_gi_ptr, decay_ptr,
    b_size, L, nc, H, HPG, P, N, lo, hi,
    sxb, sxl, sxh, sxp, sdb, sdl, sdh, sbb, sbl, sbg, sbn,
    Q: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_SEQ: tl.constexpr,
    ADJOINT: tl.constexpr, TRACK_GI: tl.constexpr, WRITE_DECAY: tl.constexpr,
    DOT_PREC: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """Forward: x_ptr is x (b, L, H, P) and B_ptr is B (b, L, G, N); adjoint: dy and C.
    Writes out (b, H, nc, P, N) fp32, with TRACK_GI out_gi likewise, and with WRITE_DECAY
    decay (2, b, H, nc) fp32: [0] the state's decay over the chunk, [1] the sink's (1 or 0:
    the initial-token sink does not decay, it restarts with a sequence)."""
    c = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = bh % H
    g = h // HPG
    n_blocks = tl.cdiv(N, BLOCK_N)
    p = (tl.program_id(2) // n_blocks) * BLOCK_P + tl.arange(0, BLOCK_P)
    n = (tl.program_id(2) % n_blocks) * BLOCK_N + tl.arange(0, BLOCK_N)
    q = tl.arange(0, Q)
    t = c * Q + q
    t_ok, p_ok, n_ok = t < L, p < P, n < N
    OP = x_ptr.dtype.element_ty

    A_h = tl.load(A_ptr + h).to(tl.float32)
    bias_h = tl.load(bias_ptr + h).to(tl.float32) if HAS_BIAS else 0.0
    dt_head = dt_ptr + b * sdb + h * sdh
    delta = discretize(dt_head + t.to(tl.int64) * sdl, t_ok, bias_h, lo, hi, SOFTPLUS)
    l = tl.cumsum(delta * A_h, axis=0)
    l_last = tl.sum(delta * A_h, axis=0)
    seg, enters, leaves, carry = chunk_segments(seg_ptr + b * L, t, t_ok, c, L, Q, HAS_SEQ)
    ut = load_rows(x_ptr + b * sxb + h * sxh, t, t_ok, p, p_ok, sxl, sxp).to(OP)
    vt = load_rows(B_ptr + b * sbb + g * sbg, t, t_ok, n, n_ok, sbl, sbn)

    slot = ((b * H + h) * nc + c) * P * N + p[:, None] * N + n[None, :]
    pn_ok = p_ok[:, None] & n_ok[None, :]
    if ADJOINT:
        read = tl.where(enters, tl.exp(l), 0.0)
        c_read = (vt.to(tl.float32) * read[:, None]).to(OP)
        tl.store(out_ptr + slot, tl.dot(tl.trans(ut), c_read, input_precision=DOT_PREC),
                 mask=pn_ok)  # fmt: skip
        if TRACK_GI:
            gamma = tl.load(gain_ptr + h).to(tl.float32)
            c_enter = tl.where(enters[:, None], vt, 0.0).to(OP)
            gi = gamma * tl.dot(tl.trans(ut), c_enter, input_precision=DOT_PREC)
            tl.store(out_gi_ptr + slot, gi, mask=pn_ok)
    else:
        to_end = tl.where(leaves, tl.exp(tl.minimum(l_last - l, 0.0)) * delta, 0.0)
        xw = (ut.to(tl.float32) * to_end[:, None]).to(OP)
        tl.store(out_ptr + slot, tl.dot(tl.trans(xw), vt.to(OP), input_precision=DOT_PREC),
                 mask=pn_ok)  # fmt: skip
    if WRITE_DECAY:  # noqa: SIM102 (one program per chunk, row and head writes the scalars)
        if tl.program_id(2) == 0:
            at = (b * H + h) * nc + c
            tl.store(decay_ptr + at, tl.where(carry, tl.exp(l_last), 0.0))
            tl.store(decay_ptr + b_size * H * nc + at, tl.where(carry, 1.0, 0.0))


@triton.autotune(
    configs=_PASS_CONFIGS, key=["P", "N", "REVERSE", "HAS_START", "STORE", "size_class"]
)
@triton.jit(do_not_specialize=["size_class"])
def ssd_state_pass_kernel(
    states_ptr, out_ptr, decay_ptr, start_ptr, final_ptr, nc, H, P, N, size_class,
    REVERSE: tl.constexpr, HAS_START: tl.constexpr, STORE: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    """states (b, H, nc, P, N) fp32 holds each chunk's contribution; with STORE, out (same
    shape, the input dtype: its readers round it to that for their dots, so this is exact
    and halves their reads; may be states itself) receives the value entering each chunk
    (REVERSE: the adjoint at the chunk's end). decay (b, H, nc); start (b, H, P, N) the
    value before the first chunk walked (HAS_START, else 0); final (b, H, P, N) fp32 the
    value after the last."""
    bh = tl.program_id(0).to(tl.int64)
    j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)  # flattened (P, N) index
    ok = j < P * N
    if HAS_START:
        S = tl.load(start_ptr + bh * P * N + j, mask=ok, other=0.0).to(tl.float32)
    else:
        S = tl.zeros((BLOCK,), dtype=tl.float32)
    row = bh * nc * P * N + j
    for i in tl.range(0, nc):
        c = nc - 1 - i if REVERSE else i
        at = row + c.to(tl.int64) * P * N
        own = tl.load(states_ptr + at, mask=ok, other=0.0)
        if STORE:  # (after the load: out may be states)
            tl.store(out_ptr + at, S.to(out_ptr.dtype.element_ty), mask=ok)
        S = S * tl.load(decay_ptr + bh * nc + c) + own
    tl.store(final_ptr + bh * P * N + j, S, mask=ok)


@triton.jit
def ssd_init_slots_kernel(
    x_ptr, dt_ptr, B_ptr, bias_ptr, meta_ptr, gi_ptr, slot_dx_ptr, slot_dd_ptr, slot_dB_ptr,
    L, nc, H, HPG, P, N, lo, hi, NSLOT,
    sxb, sxl, sxh, sxp, sdb, sdl, sdh, sbb, sbl, sbg, sbn,
    NI: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, DOT_PREC: tl.constexpr,
):  # fmt: skip
    """gi (b, H, nc, P, N), x's dtype: dL/dI at each chunk's end. Where a chunk holds initial
    tokens of its last sequence (meta[0], meta[1]), writes their slots (b, nc, NSLOT, H, .)
    of dx, dDelta and dB, per head with plain stores (deterministic); other chunks return
    at once. One program holds a whole (P, N) state (the slots sum over both)."""
    c = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = bh % H
    g = h // HPG
    meta = meta_ptr + (b * nc + c) * 4
    first = tl.load(meta)
    count = tl.load(meta + 1)
    if count > 0:
        p = tl.arange(0, BLOCK_P)
        n = tl.arange(0, BLOCK_N)
        k = tl.arange(0, NI)
        p_ok, n_ok = p < P, n < N
        r, r_ok = first + k, k < count
        OP = x_ptr.dtype.element_ty
        bias_h = tl.load(bias_ptr + h).to(tl.float32) if HAS_BIAS else 0.0
        dt_head = dt_ptr + b * sdb + h * sdh
        d = discretize(dt_head + r.to(tl.int64) * sdl, r_ok, bias_h, lo, hi, SOFTPLUS)
        xr = load_rows(x_ptr + b * sxb + h * sxh, r, r_ok, p, p_ok, sxl, sxp)
        br = load_rows(B_ptr + b * sbb + g * sbg, r, r_ok, n, n_ok, sbl, sbn).to(OP)
        state = ((b * H + h) * nc + c) * P * N + p[:, None] * N + n[None, :]
        gi = tl.load(gi_ptr + state, mask=p_ok[:, None] & n_ok[None, :], other=0.0).to(OP)
        gi_b = tl.dot(br, tl.trans(gi), input_precision=DOT_PREC)  # (NI, BLOCK_P)
        slot = (b * nc + c) * NSLOT + tl.minimum(k, NSLOT - 1)
        dx_ptrs = slot_dx_ptr + (slot[:, None] * H + h) * P + p[None, :]
        tl.store(dx_ptrs, d[:, None] * gi_b, mask=r_ok[:, None] & p_ok[None, :])
        tl.store(slot_dd_ptr + slot * H + h, tl.sum(xr.to(tl.float32) * gi_b, axis=1), mask=r_ok)
        gi_x = tl.dot(xr, gi, input_precision=DOT_PREC)  # (NI, BLOCK_N)
        dB_ptrs = slot_dB_ptr + (slot[:, None] * H + h) * N + n[None, :]
        tl.store(dB_ptrs, d[:, None] * gi_x, mask=r_ok[:, None] & n_ok[None, :])
