"""The chunk-parallel Triton kernels of the scan's backward pass.

Given the state entering each chunk (stored by the recompute pass) and the adjoint
``dL/dS`` at the chunk's end (stored by ``ssd_state_grad_kernel``), both fp32 and one per
chunk, every gradient of a chunk is local. (Storing one state per two chunks and
recomputing the other here halved that memory, but the recompute inside these kernels
cost the registers that made them spill.) Two kernels share the work, so that neither
holds a (Q, N) accumulator next to (P, N) states and (Q, Q) tiles (the single kernel this
replaced needed 255 registers and spilled kilobytes per thread in its per-head loop):

- ``ssd_chunk_bwd_dx_kernel``, one program per (chunk, row, head): ``dx``, ``dDelta``
  (then ``ddt`` through softplus and the clip), and the small per-(row, chunk, head)
  partials ``dA``, ``dD``, ``d gain``, ``d dt_bias`` and ``d sink_v``. The terms that read
  the states (``S C_tau``, ``GS B_sigma``, ``<GS, S>``) are reductions over N, formed in
  blocks of ``BLOCK_N`` columns: only a (P, BLOCK_N) slice of each state is live.
- ``ssd_chunk_bwd_dbc_kernel``, one program per (chunk, row, B/C group, block of N):
  ``dB`` and ``dC`` of its columns, summed over the group's heads in registers and written
  once (no atomics, no per-head partials), and ``d sink_k`` per (row, chunk).

``C B^T`` of every chunk comes from the forward pass (saved, (b, nc, G, Q, Q) fp32). The
decay's gradient goes through the chunk-local cumulative sum only (``dl -> dDelta`` by a
reverse cumsum inside the chunk), so no global cumulative sum is formed in either
direction.

Reads per chunk and head: x and dy three times (once in the first kernel, twice in the
second, which walks the group's heads once for the intra-chunk tiles and once for the
state terms, so the two never hold registers together; the repeats mostly hit L2),
``C B^T`` once, and each stored fp32 state and adjoint twice (once per kernel).
"""

from __future__ import annotations

import triton
import triton.language as tl

from gfssm.kernels.ssd.triton_common import (
    chunk_segments,
    decay_matrix,
    discretize,
    discretize_with_slope,
    intra_mask,
    load_rows,
)
from gfssm.kernels.triton_support import (
    built_interpreted,
    one_config_when_interpreting,
    prune_by_shared_memory,
    shared_estimate,
)

BUILT_INTERPRETED = built_interpreted()

# 8 warps for the dx kernel: with 4 it spills (up to ~200 bytes per thread at bf16, N=128).
_DX_CONFIGS = one_config_when_interpreting(
    [triton.Config({"BLOCK_N": bn}, num_warps=8, num_stages=1) for bn in (32, 64)],
    triton.Config({"BLOCK_N": 16}, num_warps=4),
)
_DBC_CONFIGS = one_config_when_interpreting(
    [triton.Config({"BLOCK_N": bn}, num_warps=w, num_stages=1) for bn in (32, 64) for w in (4, 8)],
    triton.Config({"BLOCK_N": 16}, num_warps=4),
)


@shared_estimate("ssd_chunk_bwd_dx_kernel")
def _dx_shared(k: dict) -> int:
    """x, dy, a slice of B, C, S and GS, the (Q, Q) tiles (C B^T fp32, one operand), the
    sink and initial-token tiles."""
    e, Q, BN, BP = k["elem"], k["Q"], k["BLOCK_N"], k["BLOCK_P"]
    tiles = e * (2 * Q * BP + 2 * Q * BN + 2 * BP * BN + Q * Q) + 8 * Q * Q
    return tiles * k["num_stages"] + e * (k["NI"] + k["SP"]) * (BN + BP + Q)


@shared_estimate("ssd_chunk_bwd_dbc_kernel")
def _dbc_shared(k: dict) -> int:
    e, Q, BN, BP = k["elem"], k["Q"], k["BLOCK_N"], k["BLOCK_P"]
    tiles = e * (2 * Q * BP + 2 * Q * BN + 2 * BP * BN + 2 * Q * Q)
    return tiles * k["num_stages"] + e * (k["NI"] + k["SP"]) * (BN + BP + Q)


@triton.autotune(
    configs=_DX_CONFIGS,
    key=["P", "N", "Q", "HAS_SEQ", "HAS_INIT", "HAS_SINK", "HAS_I0"],
    prune_configs_by={"early_config_prune": prune_by_shared_memory("ssd_chunk_bwd_dx_kernel")},
)
@triton.jit
def ssd_chunk_bwd_dx_kernel(
    x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, sk_ptr, sv_ptr, gain_ptr,
    seg_ptr, pos_ptr, meta_ptr, I0_ptr, dy_ptr, cb_ptr, kc_ptr, cbp_ptr,
    states_ptr, grad_states_ptr, slot_dx_ptr, slot_dd_ptr,
    dx_ptr, ddt_ptr, part_ptr, dsv_ptr,
    b_size, L, nc, H, G, HPG, P, N, n_sink, n_init, lo, hi, NSLOT,
    sxb, sxl, sxh, sxp, sdb, sdl, sdh, sbb, sbl, sbg, sbn, scb, scl, scg, scn,
    syb, syl, syh, syp,
    Q: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr, NI: tl.constexpr,
    SP: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_SEQ: tl.constexpr, HAS_SINK: tl.constexpr, HAS_INIT: tl.constexpr,
    HAS_I0: tl.constexpr, HAS_SLOTS: tl.constexpr,
    DOT_PREC: tl.constexpr,
):  # fmt: skip
    c = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = bh % H
    g = h // HPG
    q = tl.arange(0, Q)
    p = tl.arange(0, BLOCK_P)
    p_ok = p < P
    t = c * Q + q
    t_ok = t < L
    OP = x_ptr.dtype.element_ty

    B_grp = B_ptr + b * sbb + g * sbg
    C_grp = C_ptr + b * scb + g * scg
    x_head = x_ptr + b * sxb + h * sxh
    dy_head = dy_ptr + b * syb + h * syh
    dt_head = dt_ptr + b * sdb + h * sdh
    seg_row = seg_ptr + b * L
    seg, enters, leaves, carry = chunk_segments(seg_row, t, t_ok, c, L, Q, HAS_SEQ)
    meta = meta_ptr + (b * nc + c) * 4

    A_h = tl.load(A_ptr + h).to(tl.float32)
    bias_h = tl.load(bias_ptr + h).to(tl.float32) if HAS_BIAS else 0.0
    gamma = tl.load(gain_ptr + h).to(tl.float32) if HAS_INIT or HAS_I0 else 0.0
    delta, slope = discretize_with_slope(
        dt_head + t.to(tl.int64) * sdl, t_ok, bias_h, lo, hi, SOFTPLUS
    )
    l = tl.cumsum(delta * A_h, axis=0)
    l_last = tl.sum(delta * A_h, axis=0)
    xt = load_rows(x_head, t, t_ok, p, p_ok, sxl, sxp)
    dyt = load_rows(dy_head, t, t_ok, p, p_ok, syl, syp).to(OP)
    x32, dy32 = xt.to(tl.float32), dyt.to(tl.float32)
    part = (b * nc + c) * H + h
    dgain = tl.zeros((Q,), dtype=tl.float32)

    # Intra-chunk form.
    cb = tl.load(cb_ptr + ((b * nc + c) * G + g) * Q * Q + q[:, None] * Q + q[None, :])
    mask = intra_mask(seg, q, HAS_SEQ)
    dec = decay_matrix(l, mask)
    w = dec * delta[None, :]
    dyx = tl.dot(dyt, tl.trans(xt), input_precision=DOT_PREC)  # dy_tau . x_sigma
    pairs = cb * dyx
    dd = tl.sum(dec * pairs, axis=0)  # dDelta where Delta multiplies the input
    wp = w * pairs
    dl = tl.sum(wp, axis=1) - tl.sum(wp, axis=0)  # d l_tau through exp(l_tau - l_sigma)
    if HAS_INIT:
        init = tl.load(pos_ptr + b * L + t, mask=t_ok, other=n_init) < n_init
        init_pairs = tl.sum(tl.where(mask & init[None, :], pairs, 0.0), axis=0)
        dd += gamma * init_pairs
        dgain += delta * init_pairs
        w += tl.where(mask & init[None, :], gamma * delta[None, :], 0.0)
        k = tl.arange(0, NI)
        pre = tl.load(meta + 2) + k  # initial tokens of the entering sequence, earlier chunks
        pre_ok = k < tl.load(meta + 3)
    dx = tl.dot(tl.trans(w * cb).to(OP), dyt, input_precision=DOT_PREC)
    if HAS_I0:
        if HAS_SEQ:
            enter0 = tl.load(seg_row + tl.maximum(c * Q - 1, 0)) == 0
        else:
            enter0 = c >= 0
        i0_c = tl.zeros((Q, BLOCK_P), dtype=tl.float32)
    grp_chunk = (b * nc + c) * G + g
    if HAS_SINK:
        s = tl.arange(0, SP)
        s_ok = s < n_sink

    # Reductions over N of the state terms, BLOCK_N columns at a time.
    state = ((b * H + h) * nc + c) * P * N  # fp32 (P, N) per (row, head, chunk)
    s_c = tl.zeros((Q, BLOCK_P), dtype=tl.float32)  # S C_tau
    gs_b = tl.zeros((Q, BLOCK_P), dtype=tl.float32)  # GS B_sigma
    gs_s = 0.0
    for n0 in tl.range(0, N, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        n_ok = n < N
        pn = p[:, None] * N + n[None, :]
        pn_ok = p_ok[:, None] & n_ok[None, :]
        Bt = load_rows(B_grp, t, t_ok, n, n_ok, sbl, sbn).to(OP)
        Ct = load_rows(C_grp, t, t_ok, n, n_ok, scl, scn).to(OP)
        S = tl.load(states_ptr + state + pn, mask=pn_ok, other=0.0).to(OP)
        GS = tl.load(grad_states_ptr + state + pn, mask=pn_ok, other=0.0).to(OP)
        s_c = tl.dot(Ct, tl.trans(S), acc=s_c, input_precision=DOT_PREC)
        gs_b = tl.dot(Bt, tl.trans(GS), acc=gs_b, input_precision=DOT_PREC)
        gs_s += tl.sum(tl.sum(GS.to(tl.float32) * S.to(tl.float32), axis=1), axis=0)
        if HAS_I0:
            I0 = tl.load(I0_ptr + (b * H + h) * P * N + pn, mask=pn_ok, other=0.0).to(OP)
            i0_c = tl.dot(Ct, tl.trans(I0), acc=i0_c, input_precision=DOT_PREC)

    read = tl.where(enters, tl.exp(l), 0.0)
    dl += read * tl.sum(dy32 * s_c, axis=1)
    end_decay = tl.where(leaves, tl.exp(tl.minimum(l_last - l, 0.0)), 0.0)
    to_end = end_decay * delta
    dx += to_end[:, None] * gs_b
    x_gs_b = tl.sum(x32 * gs_b, axis=1)  # x_sigma . GS B_sigma
    dd += end_decay * x_gs_b
    dl -= to_end * x_gs_b
    last = tl.where(carry, tl.exp(l_last), 0.0) * gs_s + tl.sum(to_end * x_gs_b, axis=0)
    dl += tl.where(q == Q - 1, last, 0.0)

    if HAS_D:
        dx += tl.load(D_ptr + h).to(tl.float32) * dy32
    if HAS_SLOTS:  # what reached initial tokens through the sink from later chunks
        fi_lo = tl.load(meta)
        in_slot = t_ok & (t >= fi_lo) & (t < fi_lo + tl.load(meta + 1))
        slot_t = (b * nc + c) * NSLOT + tl.minimum(tl.maximum(t - fi_lo, 0), NSLOT - 1)
        slot_x = slot_dx_ptr + (slot_t[:, None] * H + h) * P + p[None, :]
        dx += tl.load(slot_x, mask=in_slot[:, None] & p_ok[None, :], other=0.0)
        dd += tl.load(slot_dd_ptr + slot_t * H + h, mask=in_slot, other=0.0)
    dx_ptrs = dx_ptr + ((b * L + t[:, None]) * H + h) * P + p[None, :]
    tl.store(dx_ptrs, dx.to(dx_ptr.dtype.element_ty), mask=t_ok[:, None] & p_ok[None, :])

    if HAS_SINK:  # learned sink, low rank: y += (C k^T) v, C k^T from the forward
        kc = tl.load(kc_ptr + grp_chunk * Q * SP + q[:, None] * SP + s[None, :])
        dsv = tl.dot(tl.trans(kc.to(OP)), dyt, input_precision=DOT_PREC)  # (SP, P)
        dsv_ptrs = dsv_ptr + ((part * SP + s[:, None]) * P + p[None, :])
        tl.store(dsv_ptrs, dsv, mask=s_ok[:, None] & p_ok[None, :])
    if HAS_INIT:  # initial tokens of the entering sequence in earlier chunks
        d_pre = discretize(dt_head + pre.to(tl.int64) * sdl, pre_ok, bias_h, lo, hi, SOFTPLUS)
        x_pre = load_rows(x_head, pre, pre_ok, p, p_ok, sxl, sxp)
        dyx_pre = tl.dot(dyt, tl.trans(x_pre), input_precision=DOT_PREC)  # (Q, NI)
        coef = tl.where(enters[:, None], dyx_pre * d_pre[None, :], 0.0)
        cb_pre = tl.load(cbp_ptr + grp_chunk * Q * NI + q[:, None] * NI + k[None, :])
        dgain += tl.sum(coef * cb_pre, axis=1)
    if HAS_I0:  # noqa: SIM102 (enter0 exists only when HAS_I0)
        if enter0:  # the first sequence reads the initial state's sink
            dy_enter = tl.where(enters[:, None], dy32, 0.0)
            dgain += tl.sum(dy_enter * i0_c, axis=1)

    # dDelta and dA through the chunk-local cumsum l = A * cumsum(Delta), then ddt.
    suffix = tl.cumsum(dl, axis=0, reverse=True)
    dd += A_h * suffix
    ddt = dd * slope
    tl.store(ddt_ptr + (b * L + t) * H + h, ddt.to(ddt_ptr.dtype.element_ty), mask=t_ok)
    stride = b_size * nc * H
    tl.store(part_ptr + part, tl.sum(delta * suffix, axis=0))
    tl.store(part_ptr + stride + part, tl.sum(tl.sum(dy32 * x32, axis=1), axis=0))
    tl.store(part_ptr + 2 * stride + part, tl.sum(dgain, axis=0))
    tl.store(part_ptr + 3 * stride + part, tl.sum(ddt, axis=0))


@triton.autotune(
    configs=_DBC_CONFIGS,
    key=["P", "N", "Q", "HAS_SEQ", "HAS_INIT", "HAS_SINK", "HAS_I0"],
    prune_configs_by={"early_config_prune": prune_by_shared_memory("ssd_chunk_bwd_dbc_kernel")},
)
@triton.jit
def ssd_chunk_bwd_dbc_kernel(
    x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, bias_ptr, sk_ptr, sv_ptr, gain_ptr,
    seg_ptr, pos_ptr, meta_ptr, I0_ptr, dy_ptr,
    states_ptr, grad_states_ptr, slot_dB_ptr,
    dB_ptr, dC_ptr, dsk_ptr,
    L, nc, H, G, HPG, P, N, n_sink, n_init, lo, hi, NSLOT,
    sxb, sxl, sxh, sxp, sdb, sdl, sdh, sbb, sbl, sbg, sbn, scb, scl, scg, scn,
    syb, syl, syh, syp,
    Q: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr, NI: tl.constexpr,
    SP: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_SEQ: tl.constexpr, HAS_SINK: tl.constexpr, HAS_INIT: tl.constexpr,
    HAS_I0: tl.constexpr, HAS_SLOTS: tl.constexpr,
    DOT_PREC: tl.constexpr,
):  # fmt: skip
    c = tl.program_id(0)
    bg = tl.program_id(1)
    b = (bg // G).to(tl.int64)
    g = bg % G
    q = tl.arange(0, Q)
    p = tl.arange(0, BLOCK_P)
    n = tl.program_id(2) * BLOCK_N + tl.arange(0, BLOCK_N)
    p_ok, n_ok = p < P, n < N
    pn = p[:, None] * N + n[None, :]
    pn_ok = p_ok[:, None] & n_ok[None, :]
    t = c * Q + q
    t_ok = t < L
    OP = x_ptr.dtype.element_ty

    B_grp = B_ptr + b * sbb + g * sbg
    C_grp = C_ptr + b * scb + g * scg
    Bt = load_rows(B_grp, t, t_ok, n, n_ok, sbl, sbn).to(OP)
    Ct = load_rows(C_grp, t, t_ok, n, n_ok, scl, scn).to(OP)
    seg_row = seg_ptr + b * L
    seg, enters, leaves, carry = chunk_segments(seg_row, t, t_ok, c, L, Q, HAS_SEQ)
    dB = tl.zeros((Q, BLOCK_N), dtype=tl.float32)
    dC = tl.zeros((Q, BLOCK_N), dtype=tl.float32)
    meta = meta_ptr + (b * nc + c) * 4
    if HAS_SLOTS:
        # Rows whose initial-token slots (written by the state-gradient kernel) apply here.
        fi_lo = tl.load(meta)
        in_slot = t_ok & (t >= fi_lo) & (t < fi_lo + tl.load(meta + 1))
        slot_t = (b * nc + c) * NSLOT + tl.minimum(tl.maximum(t - fi_lo, 0), NSLOT - 1)
    if HAS_INIT:
        init = tl.load(pos_ptr + b * L + t, mask=t_ok, other=n_init) < n_init
        k = tl.arange(0, NI)
        pre = tl.load(meta + 2) + k  # initial tokens of the entering sequence, earlier chunks
        pre_ok = k < tl.load(meta + 3)
        B_pre = load_rows(B_grp, pre, pre_ok, n, n_ok, sbl, sbn).to(OP)
    if HAS_I0:
        if HAS_SEQ:
            enter0 = tl.load(seg_row + tl.maximum(c * Q - 1, 0)) == 0
        else:
            enter0 = c >= 0
    if HAS_SINK:
        s = tl.arange(0, SP)
        s_ok = s < n_sink
        sink_k = load_rows(sk_ptr + g * N, s, s_ok, n, n_ok, G * N, 1).to(OP)
        dsk = tl.zeros((SP, BLOCK_N), dtype=tl.float32)

    # Two passes over the group's heads, so that the intra-chunk (Q, Q) tiles and the
    # state slices are never live together (registers).
    for j in tl.range(0, HPG):
        h = g * HPG + j
        A_h = tl.load(A_ptr + h).to(tl.float32)
        bias_h = tl.load(bias_ptr + h).to(tl.float32) if HAS_BIAS else 0.0
        gamma = tl.load(gain_ptr + h).to(tl.float32) if HAS_INIT or HAS_I0 else 0.0
        dt_head = dt_ptr + b * sdb + h * sdh
        x_head = x_ptr + b * sxb + h * sxh
        dy_head = dy_ptr + b * syb + h * syh
        delta = discretize(dt_head + t.to(tl.int64) * sdl, t_ok, bias_h, lo, hi, SOFTPLUS)
        l = tl.cumsum(delta * A_h, axis=0)
        xt = load_rows(x_head, t, t_ok, p, p_ok, sxl, sxp)
        dyt = load_rows(dy_head, t, t_ok, p, p_ok, syl, syp).to(OP)

        # Intra-chunk form: dC_tau += sum_sigma m_{tau sigma} B_sigma, dB likewise.
        mask = intra_mask(seg, q, HAS_SEQ)
        w = decay_matrix(l, mask) * delta[None, :]
        if HAS_INIT:
            w += tl.where(mask & init[None, :], gamma * delta[None, :], 0.0)
        m = (w * tl.dot(dyt, tl.trans(xt), input_precision=DOT_PREC)).to(OP)
        dC = tl.dot(m, Bt, acc=dC, input_precision=DOT_PREC)
        dB = tl.dot(tl.trans(m), Ct, acc=dB, input_precision=DOT_PREC)

    for j in tl.range(0, HPG):
        h = g * HPG + j
        A_h = tl.load(A_ptr + h).to(tl.float32)
        bias_h = tl.load(bias_ptr + h).to(tl.float32) if HAS_BIAS else 0.0
        gamma = tl.load(gain_ptr + h).to(tl.float32) if HAS_INIT or HAS_I0 else 0.0
        dt_head = dt_ptr + b * sdb + h * sdh
        x_head = x_ptr + b * sxb + h * sxh
        dy_head = dy_ptr + b * syb + h * syh
        delta = discretize(dt_head + t.to(tl.int64) * sdl, t_ok, bias_h, lo, hi, SOFTPLUS)
        l = tl.cumsum(delta * A_h, axis=0)
        xt = load_rows(x_head, t, t_ok, p, p_ok, sxl, sxp)
        dyt = load_rows(dy_head, t, t_ok, p, p_ok, syl, syp).to(OP)
        l_last = tl.sum(delta * A_h, axis=0)

        # The carried state S read by the chunk and the chunk-end adjoint GS.
        state = ((b * H + h) * nc + c) * P * N  # fp32 (P, N) per (row, head, chunk)
        S = tl.load(states_ptr + state + pn, mask=pn_ok, other=0.0).to(OP)
        read = tl.where(enters, tl.exp(l), 0.0)
        dy_read = (dyt.to(tl.float32) * read[:, None]).to(OP)
        dC = tl.dot(dy_read, S, acc=dC, input_precision=DOT_PREC)
        GS = tl.load(grad_states_ptr + state + pn, mask=pn_ok, other=0.0).to(OP)
        to_end = tl.where(leaves, tl.exp(tl.minimum(l_last - l, 0.0)), 0.0) * delta
        x_end = (xt.to(tl.float32) * to_end[:, None]).to(OP)
        dB = tl.dot(x_end, GS, acc=dB, input_precision=DOT_PREC)
        if HAS_SLOTS:  # what reached initial tokens through the sink, per head
            dB_slot = slot_dB_ptr + (slot_t[:, None] * H + h) * N + n[None, :]
            dB += tl.load(dB_slot, mask=in_slot[:, None] & n_ok[None, :], other=0.0)

        if HAS_SINK:  # learned sink, low rank: y += (C k^T) v
            sink_v = load_rows(sv_ptr + h * P, s, s_ok, p, p_ok, H * P, 1).to(OP)
            dy_v = tl.dot(dyt, tl.trans(sink_v), input_precision=DOT_PREC).to(OP)  # (Q, SP)
            dC = tl.dot(dy_v, sink_k, acc=dC, input_precision=DOT_PREC)
            dsk = tl.dot(tl.trans(dy_v), Ct, acc=dsk, input_precision=DOT_PREC)
        if HAS_INIT:  # initial tokens of the entering sequence in earlier chunks
            d_pre = discretize(dt_head + pre.to(tl.int64) * sdl, pre_ok, bias_h, lo, hi, SOFTPLUS)
            x_pre = load_rows(x_head, pre, pre_ok, p, p_ok, sxl, sxp)
            dyx_pre = tl.dot(dyt, tl.trans(x_pre), input_precision=DOT_PREC)  # (Q, NI)
            coef = tl.where(enters[:, None], dyx_pre * (gamma * d_pre)[None, :], 0.0)
            dC = tl.dot(coef.to(OP), B_pre, acc=dC, input_precision=DOT_PREC)
        if HAS_I0:  # noqa: SIM102 (enter0 exists only when HAS_I0)
            if enter0:  # the first sequence reads the initial state's sink
                I0 = tl.load(I0_ptr + (b * H + h) * P * N + pn, mask=pn_ok, other=0.0).to(OP)
                dy_enter = tl.where(enters[:, None], gamma * dyt.to(tl.float32), 0.0)
                dC = tl.dot(dy_enter.to(OP), I0, acc=dC, input_precision=DOT_PREC)

    out = ((b * L + t[:, None]) * G + g) * N + n[None, :]
    ok = t_ok[:, None] & n_ok[None, :]
    tl.store(dB_ptr + out, dB.to(dB_ptr.dtype.element_ty), mask=ok)
    tl.store(dC_ptr + out, dC.to(dC_ptr.dtype.element_ty), mask=ok)
    if HAS_SINK:
        dsk_ptrs = dsk_ptr + ((((b * nc + c) * SP + s[:, None]) * G + g) * N + n[None, :])
        tl.store(dsk_ptrs, dsk, mask=s_ok[:, None] & n_ok[None, :])
