"""The sequential Triton kernels of the scan: one program per (row, head, block of P) walks
the chunks of its row in order, carrying fp32 states in registers.

``ssd_forward_kernel`` is the whole forward pass in one launch. Per chunk of Q rows it
loads x, dt, B, C once, forms the chunk-local log decay ``l`` (a cumsum restarting each
chunk), the intra-chunk quadratic form, the read-out of the carried state S, of the learned
sink matrix K and of the initial-token sink I, writes y, and advances S (and I when the
chunk holds initial tokens). Chunk states never touch memory: the public Mamba-2 design
writes every chunk state in fp32, re-reads it to pass states, writes the passed states and
re-reads them for the output (~4 x b*H*P*N*L/Q*4 bytes, at Q=64 four times the size of x);
here the traffic is the minimum, read x/dt/B/C and write y. The price is sequential work
per program: b*H*P/BLOCK_P programs, enough to fill an H100 from b*H ~ 128 on.

The same kernel with ``STORE_STATES`` and without ``WRITE_Y`` recomputes the chunk-start
states for the backward pass (``(b, H, nc, P, N)`` fp32).

``ssd_state_grad_kernel`` walks the chunks backwards carrying the adjoint states
``dL/dS`` and ``dL/dI`` at chunk ends (stored per chunk for the chunk-parallel backward),
sums ``dL/dK = sum_t dy_t C_t^T`` for the learned sink, ends with the gradients of the
initial states, and, where a chunk holds initial tokens, writes what reaches them through
the carried sink I into small per-chunk slots that the chunk-parallel backward adds.
"""

from __future__ import annotations

import triton
import triton.language as tl

from gfssm.kernels.ssd.triton_common import (
    chunk_segments,
    decay_matrix,
    discretize,
    intra_mask,
)
from gfssm.kernels.triton_support import built_interpreted, one_config_when_interpreting

BUILT_INTERPRETED = built_interpreted()

_SEQ_CONFIGS = one_config_when_interpreting(
    [
        triton.Config({"BLOCK_P": bp}, num_warps=w, num_stages=s)
        for bp in (32, 64)
        for w in (4, 8)
        for s in (1, 2)
    ],
    triton.Config({"BLOCK_P": 16}, num_warps=4),
)


@triton.jit
def _init_rows_update(
    I, meta_ptr, x_head, dt_head, B_grp, bias_h, lo, hi, p, n, p_ok, n_ok,
    sxl, sxp, sdl, sbl, sbn,
    SOFTPLUS: tl.constexpr, NI: tl.constexpr, DOT_PREC: tl.constexpr,
):  # fmt: skip
    """I += sum over the chunk's initial tokens of its last sequence of Delta x B^T."""
    first = tl.load(meta_ptr)
    count = tl.load(meta_ptr + 1)
    if count > 0:
        k = tl.arange(0, NI)
        r = first + k
        r_ok = k < count
        d = discretize(dt_head + r * sdl, r_ok, bias_h, lo, hi, SOFTPLUS)
        xr = tl.load(x_head + r[:, None] * sxl + p[None, :] * sxp,
                     mask=r_ok[:, None] & p_ok[None, :], other=0.0).to(tl.float32)  # fmt: skip
        br = tl.load(B_grp + r[:, None] * sbl + n[None, :] * sbn,
                     mask=r_ok[:, None] & n_ok[None, :], other=0.0).to(tl.float32)  # fmt: skip
        I += tl.dot(tl.trans(xr * d[:, None]), br, input_precision=DOT_PREC)
    return I


@triton.autotune(configs=_SEQ_CONFIGS, key=["P", "N", "Q", "WRITE_Y", "STORE_STATES"])
@triton.jit
def ssd_forward_kernel(
    x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, K_ptr, gain_ptr,
    seg_ptr, pos_ptr, meta_ptr, S0_ptr, I0_ptr,
    y_ptr, S_out_ptr, I_out_ptr, states_ptr,
    L, nc, H, HPG, P, N, n_init, lo, hi,
    sxb, sxl, sxh, sxp, sdb, sdl, sdh, sbb, sbl, sbg, sbn, scb, scl, scg, scn,
    syb, syl, syh, syp,
    Q: tl.constexpr, BLOCK_N: tl.constexpr, NI: tl.constexpr,
    HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_SEQ: tl.constexpr,
    HAS_K: tl.constexpr, HAS_GAIN: tl.constexpr, TRACK_I: tl.constexpr,
    HAS_S0: tl.constexpr, HAS_I0: tl.constexpr, WRITE_Y: tl.constexpr,
    WRITE_FINAL: tl.constexpr, STORE_STATES: tl.constexpr, DOT_PREC: tl.constexpr,
    BLOCK_P: tl.constexpr,
):  # fmt: skip
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

    A_h = tl.load(A_ptr + h).to(tl.float32)
    bias_h = tl.load(bias_ptr + h).to(tl.float32) if HAS_BIAS else 0.0
    gamma = tl.load(gain_ptr + h).to(tl.float32) if HAS_GAIN else 0.0
    D_h = tl.load(D_ptr + h).to(tl.float32) if HAS_D else 0.0
    if HAS_S0:
        S = tl.load(S0_ptr + state_off + pn, mask=pn_ok, other=0.0)
    else:
        S = tl.zeros((BLOCK_P, BLOCK_N), dtype=tl.float32)
    if TRACK_I:
        if HAS_I0:
            I = tl.load(I0_ptr + state_off + pn, mask=pn_ok, other=0.0)
        else:
            I = tl.zeros((BLOCK_P, BLOCK_N), dtype=tl.float32)
    if HAS_K:
        Kmat = tl.load(K_ptr + h * P * N + pn, mask=pn_ok, other=0.0)

    x_head = x_ptr + b * sxb + h * sxh
    dt_head = dt_ptr + b * sdb + h * sdh
    B_grp = B_ptr + b * sbb + g * sbg
    C_grp = C_ptr + b * scb + g * scg
    seg_row = seg_ptr + b * L
    for c in tl.range(0, nc):
        t = c * Q + q
        t_ok = t < L
        delta = discretize(dt_head + t * sdl, t_ok, bias_h, lo, hi, SOFTPLUS)
        l = tl.cumsum(delta * A_h, axis=0)
        l_last = tl.sum(delta * A_h, axis=0)
        seg, enters, leaves, carry = chunk_segments(seg_row, t, t_ok, c, L, Q, HAS_SEQ)

        if STORE_STATES:
            tl.store(states_ptr + ((b * H + h) * nc + c) * P * N + pn, S, mask=pn_ok)
        if WRITE_Y:
            xt = tl.load(x_head + t[:, None] * sxl + p[None, :] * sxp,
                         mask=t_ok[:, None] & p_ok[None, :], other=0.0)  # fmt: skip
            Bt = tl.load(B_grp + t[:, None] * sbl + n[None, :] * sbn,
                         mask=t_ok[:, None] & n_ok[None, :], other=0.0).to(xt.dtype)  # fmt: skip
            Ct = tl.load(C_grp + t[:, None] * scl + n[None, :] * scn,
                         mask=t_ok[:, None] & n_ok[None, :], other=0.0).to(xt.dtype)  # fmt: skip
            mask = intra_mask(seg, q, HAS_SEQ)
            w = decay_matrix(l, mask) * delta[None, :]
            if TRACK_I and HAS_GAIN:
                pos = tl.load(pos_ptr + b * L + t, mask=t_ok, other=n_init)
                w += tl.where(mask & (pos < n_init)[None, :], gamma * delta[None, :], 0.0)
            cb = tl.dot(Ct, tl.trans(Bt), input_precision=DOT_PREC)
            acc = tl.dot((w * cb).to(xt.dtype), xt, input_precision=DOT_PREC)
            c32 = Ct.to(tl.float32)
            c_read = tl.where(enters, tl.exp(l), 0.0)[:, None] * c32
            acc += tl.dot(c_read, tl.trans(S), input_precision=DOT_PREC)
            if HAS_K:
                acc += tl.dot(c32, tl.trans(Kmat), input_precision=DOT_PREC)
            if TRACK_I and HAS_GAIN:
                c_enter = tl.where(enters[:, None], c32, 0.0)
                acc += tl.dot(c_enter, tl.trans(gamma * I), input_precision=DOT_PREC)
            if HAS_D:
                acc += D_h * xt.to(tl.float32)
            y_ptrs = y_ptr + b * syb + h * syh + t[:, None] * syl + p[None, :] * syp
            tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=t_ok[:, None] & p_ok[None, :])
            x32 = xt.to(tl.float32)
            b32 = Bt.to(tl.float32)
        else:
            x32 = tl.load(x_head + t[:, None] * sxl + p[None, :] * sxp,
                          mask=t_ok[:, None] & p_ok[None, :], other=0.0).to(tl.float32)  # fmt: skip
            b32 = tl.load(B_grp + t[:, None] * sbl + n[None, :] * sbn,
                          mask=t_ok[:, None] & n_ok[None, :], other=0.0).to(tl.float32)  # fmt: skip

        # Advance the carried state to the chunk's end (restart if a sequence starts in it).
        to_end = tl.where(leaves, tl.exp(tl.minimum(l_last - l, 0.0)) * delta, 0.0)
        S = S * tl.where(carry, tl.exp(l_last), 0.0)
        S += tl.dot(tl.trans(x32 * to_end[:, None]), b32, input_precision=DOT_PREC)
        if TRACK_I:
            I = I * tl.where(carry, 1.0, 0.0)
            I = _init_rows_update(
                I, meta_ptr + (b * nc + c) * 4, x_head, dt_head, B_grp, bias_h, lo, hi,
                p, n, p_ok, n_ok, sxl, sxp, sdl, sbl, sbn, SOFTPLUS, NI, DOT_PREC,
            )  # fmt: skip

    if WRITE_FINAL:
        tl.store(S_out_ptr + state_off + pn, S, mask=pn_ok)
        if TRACK_I:
            tl.store(I_out_ptr + state_off + pn, I, mask=pn_ok)


@triton.autotune(
    configs=_SEQ_CONFIGS,
    key=["P", "N", "Q", "TRACK_I"],
    reset_to_zero=["slot_dd_ptr", "slot_dB_ptr"],
)
@triton.jit
def ssd_state_grad_kernel(
    x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, bias_ptr, gain_ptr, seg_ptr, meta_ptr, dy_ptr,
    dS_final_ptr, dI_final_ptr,
    grad_states_ptr, dS0_ptr, dI0_ptr, dK_ptr, slot_dx_ptr, slot_dd_ptr, slot_dB_ptr,
    L, nc, H, G, HPG, P, N, lo, hi, NSLOT,
    sxb, sxl, sxh, sxp, sdb, sdl, sdh, sbb, sbl, sbg, sbn, scb, scl, scg, scn,
    syb, syl, syh, syp,
    Q: tl.constexpr, BLOCK_N: tl.constexpr, NI: tl.constexpr,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_SEQ: tl.constexpr, HAS_K: tl.constexpr,
    HAS_GAIN: tl.constexpr, TRACK_I: tl.constexpr, HAS_DSF: tl.constexpr,
    HAS_DIF: tl.constexpr, DOT_PREC: tl.constexpr, BLOCK_P: tl.constexpr,
):  # fmt: skip
    bh = tl.program_id(0)
    b = (bh // H).to(tl.int64)
    h = bh % H
    g = h // HPG
    p = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)
    n = tl.arange(0, BLOCK_N)
    q = tl.arange(0, Q)
    k = tl.arange(0, NI)
    p_ok, n_ok = p < P, n < N
    pn_ok = p_ok[:, None] & n_ok[None, :]
    pn = p[:, None] * N + n[None, :]
    state_off = (b * H + h) * P * N

    A_h = tl.load(A_ptr + h).to(tl.float32)
    bias_h = tl.load(bias_ptr + h).to(tl.float32) if HAS_BIAS else 0.0
    gamma = tl.load(gain_ptr + h).to(tl.float32) if HAS_GAIN else 0.0
    if HAS_DSF:
        GS = tl.load(dS_final_ptr + state_off + pn, mask=pn_ok, other=0.0)
    else:
        GS = tl.zeros((BLOCK_P, BLOCK_N), dtype=tl.float32)
    if TRACK_I:
        if HAS_DIF:
            GI = tl.load(dI_final_ptr + state_off + pn, mask=pn_ok, other=0.0)
        else:
            GI = tl.zeros((BLOCK_P, BLOCK_N), dtype=tl.float32)
    if HAS_K:
        dK = tl.zeros((BLOCK_P, BLOCK_N), dtype=tl.float32)

    x_head = x_ptr + b * sxb + h * sxh
    dt_head = dt_ptr + b * sdb + h * sdh
    B_grp = B_ptr + b * sbb + g * sbg
    C_grp = C_ptr + b * scb + g * scg
    dy_head = dy_ptr + b * syb + h * syh
    seg_row = seg_ptr + b * L
    for i in tl.range(0, nc):
        c = nc - 1 - i
        t = c * Q + q
        t_ok = t < L
        delta = discretize(dt_head + t * sdl, t_ok, bias_h, lo, hi, SOFTPLUS)
        l = tl.cumsum(delta * A_h, axis=0)
        l_last = tl.sum(delta * A_h, axis=0)
        seg, enters, leaves, carry = chunk_segments(seg_row, t, t_ok, c, L, Q, HAS_SEQ)
        tl.store(grad_states_ptr + ((b * H + h) * nc + c) * P * N + pn, GS, mask=pn_ok)

        if TRACK_I:
            # Initial tokens of the chunk's last sequence reach later chunks through I.
            meta = meta_ptr + (b * nc + c) * 4
            first = tl.load(meta)
            count = tl.load(meta + 1)
            if count > 0:
                r = first + k
                r_ok = k < count
                d = discretize(dt_head + r * sdl, r_ok, bias_h, lo, hi, SOFTPLUS)
                xr = tl.load(x_head + r[:, None] * sxl + p[None, :] * sxp,
                             mask=r_ok[:, None] & p_ok[None, :], other=0.0).to(tl.float32)  # fmt: skip
                br = tl.load(B_grp + r[:, None] * sbl + n[None, :] * sbn,
                             mask=r_ok[:, None] & n_ok[None, :], other=0.0).to(tl.float32)  # fmt: skip
                gi_b = tl.dot(br, tl.trans(GI), input_precision=DOT_PREC)  # (NI, BLOCK_P)
                slot = (b * nc + c) * NSLOT + tl.minimum(k, NSLOT - 1)
                dx_ptrs = slot_dx_ptr + (slot[:, None] * H + h) * P + p[None, :]
                tl.store(dx_ptrs, d[:, None] * gi_b, mask=r_ok[:, None] & p_ok[None, :])
                tl.atomic_add(slot_dd_ptr + slot * H + h, tl.sum(xr * gi_b, axis=1), mask=r_ok)
                gi_x = tl.dot(xr, GI, input_precision=DOT_PREC)  # (NI, BLOCK_N)
                dB_ptrs = slot_dB_ptr + (slot[:, None] * G + g) * N + n[None, :]
                tl.atomic_add(dB_ptrs, d[:, None] * gi_x, mask=r_ok[:, None] & n_ok[None, :])

        dyt = tl.load(dy_head + t[:, None] * syl + p[None, :] * syp,
                      mask=t_ok[:, None] & p_ok[None, :], other=0.0).to(tl.float32)  # fmt: skip
        c32 = tl.load(C_grp + t[:, None] * scl + n[None, :] * scn,
                      mask=t_ok[:, None] & n_ok[None, :], other=0.0).to(tl.float32)  # fmt: skip
        c_read = tl.where(enters, tl.exp(l), 0.0)[:, None] * c32
        GS = GS * tl.where(carry, tl.exp(l_last), 0.0)
        GS += tl.dot(tl.trans(dyt), c_read, input_precision=DOT_PREC)
        if HAS_K or (TRACK_I and HAS_GAIN and not HAS_SEQ):
            dy_c = tl.dot(tl.trans(dyt), c32, input_precision=DOT_PREC)
            if HAS_K:
                dK += dy_c
        if TRACK_I:
            GI = GI * tl.where(carry, 1.0, 0.0)
            if HAS_GAIN:
                if HAS_SEQ:
                    c_enter = tl.where(enters[:, None], c32, 0.0)
                    GI += gamma * tl.dot(tl.trans(dyt), c_enter, input_precision=DOT_PREC)
                else:
                    GI += gamma * dy_c

    tl.store(dS0_ptr + state_off + pn, GS, mask=pn_ok)
    if TRACK_I:
        tl.store(dI0_ptr + state_off + pn, GI, mask=pn_ok)
    if HAS_K:
        tl.store(dK_ptr + state_off + pn, dK, mask=pn_ok)
