"""The sequential Triton kernels of the scan: one program per (row, head, block of P) walks
the chunks of its row in order, carrying the fp32 state in registers.

``ssd_chunk_cb_kernel`` forms ``C B^T`` of every chunk once per B/C group, (b, nc, G, Q, Q)
fp32 (Q*4 bytes per token and group, small next to x), so the heads sharing a group do not
each recompute it (that product is as large as the state read-out, H/G times over).

``ssd_forward_kernel`` is then the whole forward pass. Per chunk of Q rows it loads x, dt,
B, C and ``C B^T`` once, forms the chunk-local log decay ``l`` (a cumsum restarting each
chunk), the intra-chunk quadratic form, the read-outs of the carried state S, of the
learned sink (low rank: ``(C k^T) v``) and of the initial-token sink (low rank too: the at
most ``n_init`` initial tokens of the sequence entering the chunk, plus the initial
state's sink), writes y and advances S. Chunk states never touch memory: the public
Mamba-2 design writes every chunk state in fp32, re-reads it to pass states, writes the
passed states and re-reads them for the output (about 4 * b*H*P*N*4 bytes per chunk, at
Q=64 eight times the bytes of a bf16 x); here the traffic is the minimum, read x, dt, B, C
and write y. The price is sequential work per program: b*H*P/BLOCK_P programs walk L/Q
chunks each, which fills an H100 from b*H ~ 128 on; below, the chunk-parallel schedule
(``triton_chunked``) runs this kernel with ``CHUNKED``, one chunk per program, from chunk
states passed in parallel.

The same kernel with ``STORE_STATES`` and without ``WRITE_Y`` recomputes the chunk-start
states for the backward pass, ``(b, H, nc, P, N)`` in the input dtype (read only as dot
operands, which round them to it anyway).

``ssd_state_grad_kernel`` walks the chunks backwards carrying the adjoint ``dL/dS`` of the
state at chunk ends (stored per chunk for the chunk-parallel backward) and the adjoint
``dL/dI`` of the initial-token sink; it ends with the gradients of the initial states and,
where a chunk holds initial tokens of its last sequence, writes what reaches them through
the sink from later chunks into small per-chunk slots that the chunk-parallel backward adds.

Dots take their operands in the input dtype (fp32 states are rounded to it for the dot,
as the output will be) and accumulate in fp32; float32 inputs use 3-pass TF32 on a GPU.
"""

from __future__ import annotations

import triton
import triton.language as tl

from gfssm.kernels.ssd.triton_common import (
    chunk_segments,
    decay_matrix,
    discretize,
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

# 8 warps: with 4, the forward with sinks and the state-gradient pass spill at bf16, N=128
# (up to 128 and 544 bytes per thread; the resource check shows every config).
_SEQ_CONFIGS = one_config_when_interpreting(
    [triton.Config({"BLOCK_P": bp}, num_warps=8, num_stages=s) for bp in (32, 64) for s in (1, 2)],
    triton.Config({"BLOCK_P": 16}, num_warps=4),
)


@shared_estimate("ssd_chunk_cb_kernel")
def _cb_shared(k: dict) -> int:
    return k["elem"] * 2 * k["Q"] * k["BLOCK_N"] + 4 * k["Q"] * k["Q"]


@shared_estimate("ssd_forward_kernel")
def _forward_shared(k: dict) -> int:
    """Tiles loaded per chunk (B, C, x, C B^T; num_stages copies when pipelined), the
    state's operand copy and the sink tiles."""
    e, Q, BN, BP = k["elem"], k["Q"], k["BLOCK_N"], k["BLOCK_P"]
    tiles = e * (2 * Q * BN + Q * BP) + 4 * Q * Q
    return tiles * k["num_stages"] + e * (BP * BN + (k["NI"] + k["SP"]) * (BN + BP))


@shared_estimate("_state_grad_kernel")
def _state_grad_shared(k: dict) -> int:
    e, Q, BN, BP = k["elem"], k["Q"], k["BLOCK_N"], k["BLOCK_P"]
    tiles = e * (2 * Q * BN + 2 * Q * BP)
    return tiles * k["num_stages"] + e * (2 * BP * BN + k["NI"] * (BN + BP))


@triton.jit
def ssd_chunk_cb_kernel(
    B_ptr, C_ptr, sk_ptr, meta_ptr, cb_ptr, kc_ptr, cbp_ptr, L, nc, G, N, n_sink,
    sbb, sbl, sbg, sbn, scb, scl, scg, scn,
    Q: tl.constexpr, BLOCK_N: tl.constexpr, NI: tl.constexpr, SP: tl.constexpr,
    HAS_SINK: tl.constexpr, HAS_INIT: tl.constexpr, DOT_PREC: tl.constexpr,
):  # fmt: skip
    """Products with ``C_tau`` that every head of a group shares, per chunk, fp32: formed
    once per group here instead of once per head and block of P (H/G * P/BLOCK_P times):
    ``C B^T`` (b, nc, G, Q, Q); with HAS_SINK ``C k^T`` of the learned sink's keys
    (b, nc, G, Q, SP); with HAS_INIT ``C B^T`` against the initial tokens of the sequence
    entering the chunk that lie in earlier chunks (b, nc, G, Q, NI)."""
    c = tl.program_id(0)
    bg = tl.program_id(1)
    b = (bg // G).to(tl.int64)
    g = bg % G
    q = tl.arange(0, Q)
    n = tl.arange(0, BLOCK_N)
    t = c * Q + q
    t_ok, n_ok = t < L, n < N
    OP = B_ptr.dtype.element_ty
    B_grp = B_ptr + b * sbb + g * sbg
    Bt = load_rows(B_grp, t, t_ok, n, n_ok, sbl, sbn)
    Ct = load_rows(C_ptr + b * scb + g * scg, t, t_ok, n, n_ok, scl, scn).to(OP)
    cb = tl.dot(Ct, tl.trans(Bt), input_precision=DOT_PREC)
    base = (b * nc + c) * G + g
    tl.store(cb_ptr + base * Q * Q + q[:, None] * Q + q[None, :], cb)
    if HAS_SINK:
        s = tl.arange(0, SP)
        sink_k = load_rows(sk_ptr + g * N, s, s < n_sink, n, n_ok, G * N, 1).to(OP)
        kc = tl.dot(Ct, tl.trans(sink_k), input_precision=DOT_PREC)  # (Q, SP)
        tl.store(kc_ptr + base * Q * SP + q[:, None] * SP + s[None, :], kc)
    if HAS_INIT:
        meta = meta_ptr + (b * nc + c) * 4
        k = tl.arange(0, NI)
        pre, pre_ok = tl.load(meta + 2) + k, k < tl.load(meta + 3)
        B_pre = load_rows(B_grp, pre, pre_ok, n, n_ok, sbl, sbn).to(OP)
        cbp = tl.dot(Ct, tl.trans(B_pre), input_precision=DOT_PREC)  # (Q, NI)
        tl.store(cbp_ptr + base * Q * NI + q[:, None] * NI + k[None, :], cbp)


_FORWARD_KEY = ["P", "N", "Q", "WRITE_Y", "HAS_SEQ", "HAS_INIT", "HAS_SINK", "HAS_I0"]


@triton.autotune(
    configs=_SEQ_CONFIGS,
    key=[*_FORWARD_KEY, "CHUNKED", "size_class"],
    prune_configs_by={"early_config_prune": prune_by_shared_memory("ssd_forward_kernel")},
)
@triton.jit(do_not_specialize=["size_class"])
def ssd_forward_kernel(
    x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, sk_ptr, sv_ptr, gain_ptr,
    seg_ptr, pos_ptr, meta_ptr, S0_ptr, I0_ptr, cb_ptr, kc_ptr, cbp_ptr, y_ptr, S_out_ptr,
    states_ptr, L, nc, H, G, HPG, P, N, n_sink, n_init, lo, hi, size_class,
    sxb, sxl, sxh, sxp, sdb, sdl, sdh, sbb, sbl, sbg, sbn, scb, scl, scg, scn,
    syb, syl, syh, syp,
    Q: tl.constexpr, BLOCK_N: tl.constexpr, NI: tl.constexpr, SP: tl.constexpr,
    HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_SEQ: tl.constexpr,
    HAS_SINK: tl.constexpr, HAS_INIT: tl.constexpr, HAS_S0: tl.constexpr, HAS_I0: tl.constexpr,
    WRITE_Y: tl.constexpr, WRITE_FINAL: tl.constexpr, STORE_STATES: tl.constexpr,
    STRIDE: tl.constexpr, CHUNKED: tl.constexpr, DOT_PREC: tl.constexpr,
    BLOCK_P: tl.constexpr,
):  # fmt: skip
    """HAS_INIT: read the initial-token sink (n_init > 0 and a gain); HAS_I0: read the
    initial state's sink (given, and a gain). CHUNKED: one program per (chunk, row and
    head, block of P) writes one chunk's y from the state entering it, read from
    states (b, H, nc, P, N) in x's dtype (the chunk-parallel pass, ``triton_chunk_state``)."""
    if CHUNKED:
        c_first = tl.program_id(0)
        bh = tl.program_id(1)
        p_block = tl.program_id(2)
    else:
        c_first = 0
        bh = tl.program_id(0)
        p_block = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = bh % H
    g = h // HPG
    p = p_block * BLOCK_P + tl.arange(0, BLOCK_P)
    n = tl.arange(0, BLOCK_N)
    q = tl.arange(0, Q)
    p_ok, n_ok = p < P, n < N
    pn_ok = p_ok[:, None] & n_ok[None, :]
    pn = p[:, None] * N + n[None, :]
    state_off = (b * H + h) * P * N

    x_head = x_ptr + b * sxb + h * sxh
    dt_head = dt_ptr + b * sdb + h * sdh
    B_grp = B_ptr + b * sbb + g * sbg
    C_grp = C_ptr + b * scb + g * scg
    seg_row = seg_ptr + b * L
    OP = x_ptr.dtype.element_ty  # dtype of the dot operands
    A_h = tl.load(A_ptr + h).to(tl.float32)
    bias_h = tl.load(bias_ptr + h).to(tl.float32) if HAS_BIAS else 0.0
    gamma = tl.load(gain_ptr + h).to(tl.float32) if HAS_INIT or HAS_I0 else 0.0
    D_h = tl.load(D_ptr + h).to(tl.float32) if HAS_D else 0.0
    if CHUNKED:
        chunk_state = states_ptr + state_off * nc + c_first.to(tl.int64) * P * N
        S = tl.load(chunk_state + pn, mask=pn_ok, other=0.0)
    elif HAS_S0:
        S = tl.load(S0_ptr + state_off + pn, mask=pn_ok, other=0.0)
    else:
        S = tl.zeros((BLOCK_P, BLOCK_N), dtype=tl.float32)
    if HAS_SINK and WRITE_Y:
        s = tl.arange(0, SP)
        sink_v = load_rows(sv_ptr + h * P, s, s < n_sink, p, p_ok, H * P, 1).to(OP)

    for c in tl.range(c_first, c_first + 1 if CHUNKED else nc):
        t = c * Q + q
        t_ok = t < L
        delta = discretize(dt_head + t.to(tl.int64) * sdl, t_ok, bias_h, lo, hi, SOFTPLUS)
        l = tl.cumsum(delta * A_h, axis=0)
        l_last = tl.sum(delta * A_h, axis=0)
        seg, enters, leaves, carry = chunk_segments(seg_row, t, t_ok, c, L, Q, HAS_SEQ)
        xt = load_rows(x_head, t, t_ok, p, p_ok, sxl, sxp)
        if not CHUNKED:  # (the chunk-parallel path has its end states already)
            Bt = load_rows(B_grp, t, t_ok, n, n_ok, sbl, sbn).to(OP)
        if STORE_STATES:  # noqa: SIM102 (the state entering every STRIDE-th chunk)
            if c % STRIDE == 0:
                slot_c = (b * H + h) * tl.cdiv(nc, STRIDE) + c // STRIDE
                tl.store(
                    states_ptr + slot_c * P * N + pn, S.to(states_ptr.dtype.element_ty), mask=pn_ok
                )
        if WRITE_Y:
            Ct = load_rows(C_grp, t, t_ok, n, n_ok, scl, scn).to(OP)
            mask = intra_mask(seg, q, HAS_SEQ)
            w = decay_matrix(l, mask) * delta[None, :]
            if HAS_INIT:
                init = tl.load(pos_ptr + b * L + t, mask=t_ok, other=n_init) < n_init
                w += tl.where(mask & init[None, :], gamma * delta[None, :], 0.0)
            cb = tl.load(cb_ptr + ((b * nc + c) * G + g) * Q * Q + q[:, None] * Q + q[None, :])
            acc = tl.dot((w * cb).to(OP), xt, input_precision=DOT_PREC)
            read = tl.where(enters, tl.exp(l), 0.0)
            acc += read[:, None] * tl.dot(Ct, tl.trans(S.to(OP)), input_precision=DOT_PREC)
            grp_chunk = (b * nc + c) * G + g
            if HAS_SINK:  # C k^T from ssd_chunk_cb_kernel
                kc = tl.load(kc_ptr + grp_chunk * Q * SP + q[:, None] * SP + s[None, :])
                acc += tl.dot(kc.to(OP), sink_v, input_precision=DOT_PREC)
            if HAS_INIT:
                # Initial tokens of the entering sequence that lie in earlier chunks.
                meta = meta_ptr + (b * nc + c) * 4
                pre_lo = tl.load(meta + 2)
                pre_cnt = tl.load(meta + 3)
                if pre_cnt > 0:
                    k = tl.arange(0, NI)
                    r, r_ok = pre_lo + k, k < pre_cnt
                    d_pre = discretize(
                        dt_head + r.to(tl.int64) * sdl, r_ok, bias_h, lo, hi, SOFTPLUS
                    )
                    x_pre = load_rows(x_head, r, r_ok, p, p_ok, sxl, sxp)
                    cbp = cbp_ptr + grp_chunk * Q * NI + q[:, None] * NI + k[None, :]
                    coef = tl.load(cbp)  # C B^T against them, from ssd_chunk_cb_kernel
                    coef = tl.where(enters[:, None], coef * (gamma * d_pre)[None, :], 0.0)
                    acc += tl.dot(coef.to(OP), x_pre, input_precision=DOT_PREC)
            if HAS_I0:
                if HAS_SEQ:
                    enter0 = tl.load(seg_row + tl.maximum(c * Q - 1, 0)) == 0
                else:
                    enter0 = c >= 0
                if enter0:  # the first sequence reads the initial state's sink
                    I0 = tl.load(I0_ptr + state_off + pn, mask=pn_ok, other=0.0).to(OP)
                    i0_c = tl.dot(Ct, tl.trans(I0), input_precision=DOT_PREC)
                    acc += tl.where(enters, gamma, 0.0)[:, None] * i0_c
            if HAS_D:
                acc += D_h * xt.to(tl.float32)
            y_ptrs = y_ptr + b * syb + h * syh + t.to(tl.int64)[:, None] * syl + p[None, :] * syp
            tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=t_ok[:, None] & p_ok[None, :])

        if not CHUNKED:
            # Advance the carried state to the chunk's end (restart if a sequence starts in it).
            to_end = tl.where(leaves, tl.exp(tl.minimum(l_last - l, 0.0)) * delta, 0.0)
            S = S * tl.where(carry, tl.exp(l_last), 0.0)
            xw = (xt.to(tl.float32) * to_end[:, None]).to(OP)
            S += tl.dot(tl.trans(xw), Bt, input_precision=DOT_PREC)

    if WRITE_FINAL:
        tl.store(S_out_ptr + state_off + pn, S, mask=pn_ok)


@triton.jit(do_not_specialize=["size_class"])
def _state_grad_kernel(
    x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, bias_ptr, gain_ptr, seg_ptr, meta_ptr, dy_ptr,
    dS_final_ptr, grad_states_ptr, dS0_ptr, dI0_ptr, slot_dx_ptr, slot_dd_ptr, slot_dB_ptr,
    L, nc, H, G, HPG, P, N, lo, hi, NSLOT, size_class,
    sxb, sxl, sxh, sxp, sdb, sdl, sdh, sbb, sbl, sbg, sbn, scb, scl, scg, scn,
    syb, syl, syh, syp,
    Q: tl.constexpr, BLOCK_N: tl.constexpr, NI: tl.constexpr,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_SEQ: tl.constexpr,
    TRACK_GI: tl.constexpr, HAS_SLOTS: tl.constexpr, HAS_DSF: tl.constexpr,
    STRIDE: tl.constexpr, DOT_PREC: tl.constexpr, BLOCK_P: tl.constexpr,
):  # fmt: skip
    """TRACK_GI: carry dL/dI (a gain, and initial tokens or an initial sink to feed);
    HAS_SLOTS: initial tokens exist (n_init > 0) and take gradient through the sink; their
    slots are written per head with plain stores (deterministic), which needs one program
    per head: BLOCK_P >= P (``ssd_state_grad_whole_p_kernel``)."""
    bh = tl.program_id(0)
    b = (bh // H).to(tl.int64)
    h = bh % H
    g = h // HPG
    p = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)
    n = tl.arange(0, BLOCK_N)
    q = tl.arange(0, Q)
    p_ok, n_ok = p < P, n < N
    pn_ok = p_ok[:, None] & n_ok[None, :]
    pn = p[:, None] * N + n[None, :]
    state_off = (b * H + h) * P * N

    x_head = x_ptr + b * sxb + h * sxh
    dt_head = dt_ptr + b * sdb + h * sdh
    B_grp = B_ptr + b * sbb + g * sbg
    C_grp = C_ptr + b * scb + g * scg
    dy_head = dy_ptr + b * syb + h * syh
    seg_row = seg_ptr + b * L
    OP = x_ptr.dtype.element_ty
    A_h = tl.load(A_ptr + h).to(tl.float32)
    bias_h = tl.load(bias_ptr + h).to(tl.float32) if HAS_BIAS else 0.0
    gamma = tl.load(gain_ptr + h).to(tl.float32) if TRACK_GI else 0.0
    if HAS_DSF:
        GS = tl.load(dS_final_ptr + state_off + pn, mask=pn_ok, other=0.0)
    else:
        GS = tl.zeros((BLOCK_P, BLOCK_N), dtype=tl.float32)
    if TRACK_GI:
        GI = tl.zeros((BLOCK_P, BLOCK_N), dtype=tl.float32)

    for i in tl.range(0, nc):
        c = nc - 1 - i
        t = c * Q + q
        t_ok = t < L
        delta = discretize(dt_head + t.to(tl.int64) * sdl, t_ok, bias_h, lo, hi, SOFTPLUS)
        l = tl.cumsum(delta * A_h, axis=0)
        l_last = tl.sum(delta * A_h, axis=0)
        seg, enters, leaves, carry = chunk_segments(seg_row, t, t_ok, c, L, Q, HAS_SEQ)
        if (c % STRIDE == STRIDE - 1) | (c == nc - 1):  # dL/dS after every STRIDE chunks
            slot_c = (b * H + h) * tl.cdiv(nc, STRIDE) + c // STRIDE
            tl.store(
                grad_states_ptr + slot_c * P * N + pn,
                GS.to(grad_states_ptr.dtype.element_ty),
                mask=pn_ok,
            )

        if HAS_SLOTS:
            # Initial tokens of the chunk's last sequence reach later chunks through I.
            meta = meta_ptr + (b * nc + c) * 4
            first = tl.load(meta)
            count = tl.load(meta + 1)
            if count > 0:
                k = tl.arange(0, NI)
                r, r_ok = first + k, k < count
                d = discretize(dt_head + r.to(tl.int64) * sdl, r_ok, bias_h, lo, hi, SOFTPLUS)
                xr = load_rows(x_head, r, r_ok, p, p_ok, sxl, sxp)
                br = load_rows(B_grp, r, r_ok, n, n_ok, sbl, sbn).to(OP)
                gi = GI.to(OP)
                gi_b = tl.dot(br, tl.trans(gi), input_precision=DOT_PREC)  # (NI, BLOCK_P)
                slot = (b * nc + c) * NSLOT + tl.minimum(k, NSLOT - 1)
                dx_ptrs = slot_dx_ptr + (slot[:, None] * H + h) * P + p[None, :]
                tl.store(dx_ptrs, d[:, None] * gi_b, mask=r_ok[:, None] & p_ok[None, :])
                x_gi_b = tl.sum(xr.to(tl.float32) * gi_b, axis=1)
                tl.store(slot_dd_ptr + slot * H + h, x_gi_b, mask=r_ok)
                gi_x = tl.dot(xr, gi, input_precision=DOT_PREC)  # (NI, BLOCK_N)
                dB_ptrs = slot_dB_ptr + (slot[:, None] * H + h) * N + n[None, :]
                tl.store(dB_ptrs, d[:, None] * gi_x, mask=r_ok[:, None] & n_ok[None, :])

        dyt = load_rows(dy_head, t, t_ok, p, p_ok, syl, syp).to(OP)
        Ct = load_rows(C_grp, t, t_ok, n, n_ok, scl, scn).to(tl.float32)
        read = tl.where(enters, tl.exp(l), 0.0)
        GS = GS * tl.where(carry, tl.exp(l_last), 0.0)
        GS += tl.dot(tl.trans(dyt), (Ct * read[:, None]).to(OP), input_precision=DOT_PREC)
        if TRACK_GI:
            GI = GI * tl.where(carry, 1.0, 0.0)
            c_enter = tl.where(enters[:, None], Ct, 0.0).to(OP)
            GI += gamma * tl.dot(tl.trans(dyt), c_enter, input_precision=DOT_PREC)

    tl.store(dS0_ptr + state_off + pn, GS, mask=pn_ok)
    if TRACK_GI:
        tl.store(dI0_ptr + state_off + pn, GI, mask=pn_ok)


_STATE_GRAD_KEY = ["P", "N", "Q", "HAS_SEQ", "TRACK_GI", "HAS_SLOTS", "STRIDE", "size_class"]
# Blocks of P in parallel (no initial-token slots).
_STATE_GRAD_PRUNE = {"early_config_prune": prune_by_shared_memory("_state_grad_kernel")}
ssd_state_grad_kernel = triton.autotune(
    configs=_SEQ_CONFIGS, key=_STATE_GRAD_KEY, prune_configs_by=_STATE_GRAD_PRUNE
)(_state_grad_kernel)
# One program per (row, head), BLOCK_P given by the launcher (initial-token slots).
ssd_state_grad_whole_p_kernel = triton.autotune(
    configs=one_config_when_interpreting(
        [triton.Config({}, num_warps=8, num_stages=s) for s in (1, 2)],
        triton.Config({}, num_warps=4),
    ),
    key=_STATE_GRAD_KEY,
    prune_configs_by=_STATE_GRAD_PRUNE,
)(_state_grad_kernel)
