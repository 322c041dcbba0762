"""The chunk-parallel Triton kernel of the scan's backward pass.

One program per (chunk, row, B/C group) loops over the heads of its group. Given the
chunk-start state ``S`` (recomputed by the forward kernel) and the adjoint ``dL/dS`` at
the chunk's end (from ``ssd_state_grad_kernel``), every gradient of the chunk is local:

- ``dx``, ``dDelta`` (then ``ddt`` through softplus and the clip) per head, complete;
- ``dB`` and ``dC`` summed over the group's heads in registers, written once: no atomics
  and no per-head partials (with G=1 and H=32 those would be 32 times the size of B);
- ``dA``, ``dD``, ``d gain`` and ``d dt_bias`` as per-(row, chunk, head) partials.

``C B^T`` is formed once per group and reused by all its heads. The decay's gradient is
taken through the chunk-local cumulative sum only (``dl -> dDelta`` by a reverse cumsum
inside the chunk), so no global cumulative sum is ever formed, in either direction.

Reads per chunk and head: x, dy (Q*P each), the two fp32 states (2*P*N*4 bytes); the
states dominate when Q*E < 8*N (E bytes per element), so larger chunks (128) cut the
backward's traffic on a GPU at the price of more work in the quadratic form.
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
)
from gfssm.kernels.triton_support import built_interpreted, one_config_when_interpreting

BUILT_INTERPRETED = built_interpreted()

_CHUNK_CONFIGS = one_config_when_interpreting(
    [triton.Config({}, num_warps=w, num_stages=s) for w in (4, 8) for s in (1, 2)],
    triton.Config({}, num_warps=4),
)


@triton.autotune(configs=_CHUNK_CONFIGS, key=["P", "N", "Q", "TRACK_I", "HAS_SEQ"])
@triton.jit
def ssd_chunk_bwd_kernel(
    x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, K_ptr, gain_ptr,
    seg_ptr, pos_ptr, meta_ptr, I0_ptr, dy_ptr,
    states_ptr, grad_states_ptr, slot_dx_ptr, slot_dd_ptr, slot_dB_ptr,
    dx_ptr, ddt_ptr, dB_ptr, dC_ptr, part_ptr,
    b_size, L, nc, H, G, HPG, P, N, n_init, lo, hi, NSLOT,
    sxb, sxl, sxh, sxp, sdb, sdl, sdh, sbb, sbl, sbg, sbn, scb, scl, scg, scn,
    syb, syl, syh, syp,
    Q: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr, NI: tl.constexpr,
    HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_SEQ: tl.constexpr,
    HAS_K: tl.constexpr, HAS_GAIN: tl.constexpr, TRACK_I: tl.constexpr, HAS_I0: tl.constexpr,
    DOT_PREC: tl.constexpr,
):  # fmt: skip
    c = tl.program_id(0)
    bg = tl.program_id(1)
    b = (bg // G).to(tl.int64)
    g = bg % G
    q = tl.arange(0, Q)
    p = tl.arange(0, BLOCK_P)
    n = tl.arange(0, BLOCK_N)
    kk = tl.arange(0, NI)
    p_ok, n_ok = p < P, n < N
    pn_ok = p_ok[:, None] & n_ok[None, :]
    pn = p[:, None] * N + n[None, :]
    t = c * Q + q
    t_ok = t < L
    qp_ok = t_ok[:, None] & p_ok[None, :]
    qn_ok = t_ok[:, None] & n_ok[None, :]

    B_grp = B_ptr + b * sbb + g * sbg
    C_grp = C_ptr + b * scb + g * scg
    Bt = tl.load(B_grp + t[:, None] * sbl + n[None, :] * sbn, mask=qn_ok, other=0.0)
    Ct = tl.load(C_grp + t[:, None] * scl + n[None, :] * scn, mask=qn_ok, other=0.0)
    b32, c32 = Bt.to(tl.float32), Ct.to(tl.float32)
    cb = tl.dot(Ct, tl.trans(Bt), input_precision=DOT_PREC)  # shared by the group's heads
    seg_row = seg_ptr + b * L
    seg, enters, leaves, carry = chunk_segments(seg_row, t, t_ok, c, L, Q, HAS_SEQ)
    mask = intra_mask(seg, q, HAS_SEQ)
    r_enter = tl.where(enters, 1.0, 0.0)

    dB = tl.zeros((Q, BLOCK_N), dtype=tl.float32)
    dC = tl.zeros((Q, BLOCK_N), dtype=tl.float32)
    if TRACK_I:
        init = tl.load(pos_ptr + b * L + t, mask=t_ok, other=n_init) < n_init
        meta = meta_ptr + (b * nc + c) * 4
        fi_lo = tl.load(meta)
        fi_cnt = tl.load(meta + 1)
        pre_lo = tl.load(meta + 2)
        pre_cnt = tl.load(meta + 3)
        # Rows whose initial-token slots (written by the state-gradient kernel) apply here.
        in_slot = t_ok & (t >= fi_lo) & (t < fi_lo + fi_cnt)
        slot = (b * nc + c) * NSLOT + tl.minimum(tl.maximum(t - fi_lo, 0), NSLOT - 1)
        dB_slot = slot_dB_ptr + (slot[:, None] * G + g) * N + n[None, :]
        dB += tl.load(dB_slot, mask=in_slot[:, None] & n_ok[None, :], other=0.0)
        if HAS_GAIN:
            pr = pre_lo + kk
            pr_ok = kk < pre_cnt
            B_pre = tl.load(B_grp + pr[:, None] * sbl + n[None, :] * sbn,
                            mask=pr_ok[:, None] & n_ok[None, :], other=0.0).to(tl.float32)  # fmt: skip
            cb_pre = tl.dot(c32, tl.trans(B_pre), input_precision=DOT_PREC)  # (Q, NI)
        if HAS_I0:
            if HAS_SEQ:
                enter0 = tl.load(seg_row + tl.maximum(c * Q - 1, 0)) == 0
            else:
                enter0 = c >= 0

    for j in tl.range(0, HPG):
        h = g * HPG + j
        A_h = tl.load(A_ptr + h).to(tl.float32)
        bias_h = tl.load(bias_ptr + h).to(tl.float32) if HAS_BIAS else 0.0
        gamma = tl.load(gain_ptr + h).to(tl.float32) if HAS_GAIN else 0.0
        dt_head = dt_ptr + b * sdb + h * sdh
        delta, slope = discretize_with_slope(dt_head + t * sdl, t_ok, bias_h, lo, hi, SOFTPLUS)
        l = tl.cumsum(delta * A_h, axis=0)
        l_last = tl.sum(delta * A_h, axis=0)
        x_head = x_ptr + b * sxb + h * sxh
        xt = tl.load(x_head + t[:, None] * sxl + p[None, :] * sxp, mask=qp_ok, other=0.0)
        dyt = tl.load(dy_ptr + b * syb + h * syh + t[:, None] * syl + p[None, :] * syp,
                      mask=qp_ok, other=0.0)  # fmt: skip
        x32, dy32 = xt.to(tl.float32), dyt.to(tl.float32)
        state = ((b * H + h) * nc + c) * P * N + pn
        S = tl.load(states_ptr + state, mask=pn_ok, other=0.0)
        GS = tl.load(grad_states_ptr + state, mask=pn_ok, other=0.0)

        dec = decay_matrix(l, mask)
        w_decay = dec * delta[None, :]
        w = w_decay
        if TRACK_I and HAS_GAIN:
            w += tl.where(mask & init[None, :], gamma * delta[None, :], 0.0)
        dyx = tl.dot(dyt, tl.trans(xt), input_precision=DOT_PREC)  # (Q, Q) dy_tau . x_sigma
        pairs = cb * dyx

        # dx: intra-chunk form, the path to the chunk's end state, D, initial-token slots.
        dx = tl.dot(tl.trans(w * cb).to(dyt.dtype), dyt, input_precision=DOT_PREC)
        end_decay = tl.where(leaves, tl.exp(tl.minimum(l_last - l, 0.0)), 0.0)
        to_end = end_decay * delta
        gs_b = tl.dot(b32, tl.trans(GS), input_precision=DOT_PREC)  # (Q, P) GS B_sigma
        dx += to_end[:, None] * gs_b
        if HAS_D:
            dx += tl.load(D_ptr + h).to(tl.float32) * dy32
        if TRACK_I:
            slot_x = slot_dx_ptr + (slot[:, None] * H + h) * P + p[None, :]
            dx += tl.load(slot_x, mask=in_slot[:, None] & p_ok[None, :], other=0.0)
        dx_ptrs = dx_ptr + ((b * L + t[:, None]) * H + h) * P + p[None, :]
        tl.store(dx_ptrs, dx.to(dx_ptr.dtype.element_ty), mask=qp_ok)

        # dB, dC: intra-chunk form, the carried-state read-out, the chunk-end state, sinks.
        m2 = w * dyx
        dC += tl.dot(m2.to(Bt.dtype), Bt, input_precision=DOT_PREC)
        dB += tl.dot(tl.trans(m2).to(Ct.dtype), Ct, input_precision=DOT_PREC)
        read = tl.where(enters, tl.exp(l), 0.0)
        dy_s = tl.dot(dy32, S, input_precision=DOT_PREC)  # (Q, N) S^T dy_tau
        dC += read[:, None] * dy_s
        if HAS_K:
            Kmat = tl.load(K_ptr + h * P * N + pn, mask=pn_ok, other=0.0)
            dC += tl.dot(dy32, Kmat, input_precision=DOT_PREC)
        x_gs = tl.dot(x32, GS, input_precision=DOT_PREC)  # (Q, N) GS^T x_sigma
        dB += to_end[:, None] * x_gs

        # dDelta where Delta multiplies the input, and the gain's gradient.
        dd = tl.sum(dec * pairs, axis=0)
        x_gs_b = tl.sum(x32 * gs_b, axis=1)  # x_sigma . GS B_sigma
        dd += end_decay * x_gs_b
        dgain = tl.zeros((Q,), dtype=tl.float32)
        if TRACK_I:
            dd += tl.load(slot_dd_ptr + slot * H + h, mask=in_slot, other=0.0)
            if HAS_GAIN:
                init_pairs = tl.sum(tl.where(mask & init[None, :], pairs, 0.0), axis=0)
                dd += gamma * tl.where(init, init_pairs, 0.0)
                dgain += delta * tl.where(init, init_pairs, 0.0)
                if pre_cnt > 0:  # initial tokens of the entering sequence in earlier chunks
                    d_pre = discretize(dt_head + pr * sdl, pr_ok, bias_h, lo, hi, SOFTPLUS)
                    x_pre = tl.load(x_head + pr[:, None] * sxl + p[None, :] * sxp,
                                    mask=pr_ok[:, None] & p_ok[None, :], other=0.0)  # fmt: skip
                    dyx_pre = tl.dot(dy32, tl.trans(x_pre.to(tl.float32)), input_precision=DOT_PREC)
                    coef = r_enter[:, None] * dyx_pre * d_pre[None, :]
                    dC += gamma * tl.dot(coef, B_pre, input_precision=DOT_PREC)
                    dgain += tl.sum(coef * cb_pre, axis=1)
                if HAS_I0:  # noqa: SIM102 (enter0 exists only when HAS_I0)
                    if enter0:
                        I0 = tl.load(I0_ptr + (b * H + h) * P * N + pn, mask=pn_ok, other=0.0)
                        dy_i0 = tl.dot(dy32, I0, input_precision=DOT_PREC)
                        dC += (gamma * r_enter)[:, None] * dy_i0
                        dgain += r_enter * tl.sum(dy_i0 * c32, axis=1)

        # The chunk-local log decay l: its gradient, then dDelta and dA through the cumsum.
        wp = w_decay * pairs
        dl = tl.sum(wp, axis=1) - tl.sum(wp, axis=0)
        dl += read * tl.sum(dy_s * c32, axis=1)
        dl -= to_end * x_gs_b
        last = tl.where(carry, tl.exp(l_last), 0.0) * tl.sum(tl.sum(GS * S, axis=1), axis=0)
        last += tl.sum(to_end * x_gs_b, axis=0)
        dl += tl.where(q == Q - 1, last, 0.0)
        suffix = tl.cumsum(dl, axis=0, reverse=True)
        dd += A_h * suffix
        ddt = dd * slope
        ddt_ptrs = ddt_ptr + (b * L + t) * H + h
        tl.store(ddt_ptrs, ddt.to(ddt_ptr.dtype.element_ty), mask=t_ok)

        part = (b * nc + c) * H + h
        stride = b_size * nc * H
        tl.store(part_ptr + part, tl.sum(delta * suffix, axis=0))
        tl.store(part_ptr + stride + part, tl.sum(tl.sum(dy32 * x32, axis=1), axis=0))
        tl.store(part_ptr + 2 * stride + part, tl.sum(dgain, axis=0))
        tl.store(part_ptr + 3 * stride + part, tl.sum(ddt, axis=0))

    out = ((b * L + t[:, None]) * G + g) * N + n[None, :]
    tl.store(dB_ptr + out, dB.to(dB_ptr.dtype.element_ty), mask=qn_ok)
    tl.store(dC_ptr + out, dC.to(dC_ptr.dtype.element_ty), mask=qn_ok)
