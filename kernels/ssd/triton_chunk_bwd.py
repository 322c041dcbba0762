"""The chunk-parallel Triton kernel of the scan's backward pass.

One program per (STRIDE chunks, row, B/C group) loops over its chunks and, in each, over
the heads of its group. Given the state entering the chunk (stored by the recompute for
the first chunk of the STRIDE, advanced here for the next) and the adjoint ``dL/dS`` at the
chunk's end (from ``ssd_state_grad_kernel`` for the last, stepped back here for the one
before), every gradient of the chunk is local:

- ``dx`` and ``dDelta`` (then ``ddt`` through softplus and the clip) per head, complete;
- ``dB`` and ``dC`` summed over the group's heads in registers and written once: no atomics
  and no per-head partials (with G=1 and H=32 those would be 32 times the size of B);
- ``dA``, ``dD``, ``d gain``, ``d dt_bias`` per (row, chunk, head), the learned sink's
  ``d sink_v`` per (row, chunk, head) and ``d sink_k`` per (row, chunk, group): small
  partials summed on the host.

``C B^T`` and ``C k^T`` are formed once per group and reused by all its heads. The decay's
gradient goes through the chunk-local cumulative sum only (``dl -> dDelta`` by a reverse
cumsum inside the chunk), so no global cumulative sum is formed in either direction.

Reads per chunk and head: x and dy (Q*P each, and a neighbour chunk's for the recomputed
state or adjoint) and the two fp32 states (2*P*N*4 bytes per STRIDE chunks). At bf16,
P=64, N=128, Q=64 the states would be 4 of 5 units read with one state per chunk; STRIDE=2
halves that while the (Q, Q) tiles stay at Q=64 (Q=128 would double them and spill).
"""

from __future__ import annotations

import triton
import triton.language as tl

from gfssm.kernels.ssd.triton_common import (
    advance_state,
    chunk_segments,
    decay_matrix,
    discretize,
    discretize_with_slope,
    intra_mask,
    load_rows,
    retreat_adjoint,
)
from gfssm.kernels.triton_support import built_interpreted, one_config_when_interpreting

BUILT_INTERPRETED = built_interpreted()

_CHUNK_CONFIGS = one_config_when_interpreting(
    [triton.Config({}, num_warps=w, num_stages=s) for w in (4, 8) for s in (1, 2)],
    triton.Config({}, num_warps=4),
)


@triton.autotune(configs=_CHUNK_CONFIGS, key=["P", "N", "Q", "HAS_SEQ", "HAS_INIT", "HAS_SINK"])
@triton.jit
def ssd_chunk_bwd_kernel(
    x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, sk_ptr, sv_ptr, gain_ptr,
    seg_ptr, pos_ptr, meta_ptr, I0_ptr, dy_ptr,
    states_ptr, grad_states_ptr, slot_dx_ptr, slot_dd_ptr, slot_dB_ptr,
    dx_ptr, ddt_ptr, dB_ptr, dC_ptr, part_ptr, dsv_ptr, dsk_ptr,
    b_size, L, nc, H, G, HPG, P, N, n_sink, n_init, lo, hi, NSLOT,
    sxb, sxl, sxh, sxp, sdb, sdl, sdh, sbb, sbl, sbg, sbn, scb, scl, scg, scn,
    syb, syl, syh, syp,
    Q: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr, NI: tl.constexpr,
    SP: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_SEQ: tl.constexpr, HAS_SINK: tl.constexpr, HAS_INIT: tl.constexpr,
    HAS_I0: tl.constexpr, HAS_SLOTS: tl.constexpr, STRIDE: tl.constexpr,
    DOT_PREC: tl.constexpr,
):  # fmt: skip
    c0 = tl.program_id(0) * STRIDE
    bg = tl.program_id(1)
    b = (bg // G).to(tl.int64)
    g = bg % G
    q = tl.arange(0, Q)
    p = tl.arange(0, BLOCK_P)
    n = tl.arange(0, BLOCK_N)
    p_ok, n_ok = p < P, n < N
    pn_ok = p_ok[:, None] & n_ok[None, :]
    pn = p[:, None] * N + n[None, :]
    # STRIDE consecutive chunks share one stored state and one stored adjoint; the chunks
    # after the first advance the state, those before the last step the adjoint back.
    for r in tl.range(0, STRIDE):
        c = c0 + r
        if c < nc:
            t = c * Q + q
            t_ok = t < L
            OP = x_ptr.dtype.element_ty

            B_grp = B_ptr + b * sbb + g * sbg
            C_grp = C_ptr + b * scb + g * scg
            Bt = load_rows(B_grp, t, t_ok, n, n_ok, sbl, sbn).to(OP)
            Ct = load_rows(C_grp, t, t_ok, n, n_ok, scl, scn).to(OP)
            cb = tl.dot(Ct, tl.trans(Bt), input_precision=DOT_PREC)  # shared by the group's heads
            seg_row = seg_ptr + b * L
            seg, enters, leaves, carry = chunk_segments(seg_row, t, t_ok, c, L, Q, HAS_SEQ)
            dB = tl.zeros((Q, BLOCK_N), dtype=tl.float32)
            dC = tl.zeros((Q, BLOCK_N), dtype=tl.float32)

            meta = meta_ptr + (b * nc + c) * 4
            if HAS_SLOTS:
                # Rows whose initial-token slots (written by the state-gradient kernel) apply here.
                fi_lo = tl.load(meta)
                in_slot = t_ok & (t >= fi_lo) & (t < fi_lo + tl.load(meta + 1))
                slot = (b * nc + c) * NSLOT + tl.minimum(tl.maximum(t - fi_lo, 0), NSLOT - 1)
                dB_slot = slot_dB_ptr + (slot[:, None] * G + g) * N + n[None, :]
                dB += tl.load(dB_slot, mask=in_slot[:, None] & n_ok[None, :], other=0.0)
            if HAS_INIT:
                init = tl.load(pos_ptr + b * L + t, mask=t_ok, other=n_init) < n_init
                k = tl.arange(0, NI)
                pre = (
                    tl.load(meta + 2) + k
                )  # initial tokens of the entering sequence, earlier chunks
                pre_ok = k < tl.load(meta + 3)
                B_pre = load_rows(B_grp, pre, pre_ok, n, n_ok, sbl, sbn).to(OP)
                cb_pre = tl.dot(Ct, tl.trans(B_pre), input_precision=DOT_PREC)  # (Q, NI)
            if HAS_I0:
                if HAS_SEQ:
                    enter0 = tl.load(seg_row + tl.maximum(c * Q - 1, 0)) == 0
                else:
                    enter0 = c >= 0
            if HAS_SINK:
                s = tl.arange(0, SP)
                s_ok = s < n_sink
                sink_k = load_rows(sk_ptr + g * N, s, s_ok, n, n_ok, G * N, 1).to(OP)
                kc = tl.dot(Ct, tl.trans(sink_k), input_precision=DOT_PREC).to(OP)  # (Q, SP)
                dsk = tl.zeros((SP, BLOCK_N), dtype=tl.float32)

            for j in tl.range(0, HPG):
                h = g * HPG + j
                A_h = tl.load(A_ptr + h).to(tl.float32)
                bias_h = tl.load(bias_ptr + h).to(tl.float32) if HAS_BIAS else 0.0
                gamma = tl.load(gain_ptr + h).to(tl.float32) if HAS_INIT or HAS_I0 else 0.0
                dt_head = dt_ptr + b * sdb + h * sdh
                delta, slope = discretize_with_slope(
                    dt_head + t * sdl, t_ok, bias_h, lo, hi, SOFTPLUS
                )
                l = tl.cumsum(delta * A_h, axis=0)
                l_last = tl.sum(delta * A_h, axis=0)
                x_head = x_ptr + b * sxb + h * sxh
                xt = load_rows(x_head, t, t_ok, p, p_ok, sxl, sxp)
                dyt = load_rows(dy_ptr + b * syb + h * syh, t, t_ok, p, p_ok, syl, syp).to(OP)
                x32, dy32 = xt.to(tl.float32), dyt.to(tl.float32)
                part = (b * nc + c) * H + h
                dgain = tl.zeros((Q,), dtype=tl.float32)

                # Intra-chunk form: every (Q, Q) tile is reduced here and dies before the states.
                mask = intra_mask(seg, q, HAS_SEQ)  # rebuilt per head: cheaper than holding it
                dec = decay_matrix(l, mask)
                w = dec * delta[None, :]
                dyx = tl.dot(dyt, tl.trans(xt), input_precision=DOT_PREC)  # dy_tau . x_sigma
                pairs = cb * dyx
                dd = tl.sum(dec * pairs, axis=0)  # dDelta where Delta multiplies the input
                wp = w * pairs
                dl = tl.sum(wp, axis=1) - tl.sum(wp, axis=0)  # d l_tau through exp(l_tau - l_sigma)
                if HAS_INIT:
                    init_pairs = tl.sum(tl.where(mask & init[None, :], pairs, 0.0), axis=0)
                    dd += gamma * init_pairs
                    dgain += delta * init_pairs
                    w += tl.where(mask & init[None, :], gamma * delta[None, :], 0.0)
                dx = tl.dot(tl.trans(w * cb).to(OP), dyt, input_precision=DOT_PREC)
                m2 = w * dyx
                dC = tl.dot(m2.to(OP), Bt, acc=dC, input_precision=DOT_PREC)
                dB = tl.dot(tl.trans(m2).to(OP), Ct, acc=dB, input_precision=DOT_PREC)

                # The carried state S read by the chunk, and the chunk-end state's adjoint GS
                # (fp32 in memory, rounded to the operand dtype for the dots as in the forward).
                state = ((b * H + h) * tl.cdiv(nc, STRIDE) + c0 // STRIDE) * P * N + pn
                S32 = tl.load(states_ptr + state, mask=pn_ok, other=0.0)
                for r_prev in tl.range(0, r):
                    S32 = advance_state(
                        S32, x_head, B_grp, dt_head, seg_row, c0 + r_prev, L, A_h, bias_h,
                        lo, hi, p, p_ok, n, n_ok, q, sxl, sxp, sbl, sbn, sdl,
                        Q, HAS_SEQ, SOFTPLUS, DOT_PREC,
                    )  # fmt: skip
                S = S32.to(OP)
                read = tl.where(enters, tl.exp(l), 0.0)
                dC = tl.dot((dy32 * read[:, None]).to(OP), S, acc=dC, input_precision=DOT_PREC)
                s_c = tl.dot(Ct, tl.trans(S), input_precision=DOT_PREC)  # (Q, P) S C_tau
                dl += read * tl.sum(dy32 * s_c, axis=1)
                GS32 = tl.load(grad_states_ptr + state, mask=pn_ok, other=0.0)
                for k_back in tl.range(0, STRIDE - 1 - r):
                    r_next = STRIDE - 1 - k_back
                    if c0 + r_next < nc:
                        GS32 = retreat_adjoint(
                            GS32, dy_ptr + b * syb + h * syh, C_grp, dt_head, seg_row,
                            c0 + r_next, L, A_h, bias_h, lo, hi, p, p_ok, n, n_ok, q,
                            syl, syp, scl, scn, sdl, Q, HAS_SEQ, SOFTPLUS, DOT_PREC,
                        )  # fmt: skip
                GS = GS32.to(OP)
                gs_s = tl.sum(tl.sum(GS.to(tl.float32) * S.to(tl.float32), axis=1), axis=0)
                end_decay = tl.where(leaves, tl.exp(tl.minimum(l_last - l, 0.0)), 0.0)
                to_end = end_decay * delta
                gs_b = tl.dot(Bt, tl.trans(GS), input_precision=DOT_PREC)  # (Q, P) GS B_sigma
                dx += to_end[:, None] * gs_b
                dB = tl.dot((x32 * to_end[:, None]).to(OP), GS, acc=dB, input_precision=DOT_PREC)
                x_gs_b = tl.sum(x32 * gs_b, axis=1)  # x_sigma . GS B_sigma
                dd += end_decay * x_gs_b
                dl -= to_end * x_gs_b
                last = tl.where(carry, tl.exp(l_last), 0.0) * gs_s + tl.sum(to_end * x_gs_b, axis=0)
                dl += tl.where(q == Q - 1, last, 0.0)

                if HAS_D:
                    dx += tl.load(D_ptr + h).to(tl.float32) * dy32
                if HAS_SLOTS:  # what reached initial tokens through the sink from later chunks
                    slot_x = slot_dx_ptr + (slot[:, None] * H + h) * P + p[None, :]
                    dx += tl.load(slot_x, mask=in_slot[:, None] & p_ok[None, :], other=0.0)
                    dd += tl.load(slot_dd_ptr + slot * H + h, mask=in_slot, other=0.0)
                dx_ptrs = dx_ptr + ((b * L + t[:, None]) * H + h) * P + p[None, :]
                tl.store(
                    dx_ptrs, dx.to(dx_ptr.dtype.element_ty), mask=t_ok[:, None] & p_ok[None, :]
                )

                if HAS_SINK:  # learned sink, low rank: y += (C k^T) v
                    sink_v = load_rows(sv_ptr + h * P, s, s_ok, p, p_ok, H * P, 1).to(OP)
                    dy_v = tl.dot(dyt, tl.trans(sink_v), input_precision=DOT_PREC).to(OP)  # (Q, SP)
                    dC = tl.dot(dy_v, sink_k, acc=dC, input_precision=DOT_PREC)
                    dsk += tl.dot(tl.trans(dy_v), Ct, input_precision=DOT_PREC)
                    dsv = tl.dot(tl.trans(kc), dyt, input_precision=DOT_PREC)  # (SP, P)
                    dsv_ptrs = dsv_ptr + ((part * SP + s[:, None]) * P + p[None, :])
                    tl.store(dsv_ptrs, dsv, mask=s_ok[:, None] & p_ok[None, :])
                if HAS_INIT:  # initial tokens of the entering sequence in earlier chunks
                    d_pre = discretize(dt_head + pre * sdl, pre_ok, bias_h, lo, hi, SOFTPLUS)
                    x_pre = load_rows(x_head, pre, pre_ok, p, p_ok, sxl, sxp)
                    dyx_pre = tl.dot(dyt, tl.trans(x_pre), input_precision=DOT_PREC)  # (Q, NI)
                    coef = tl.where(enters[:, None], dyx_pre * d_pre[None, :], 0.0)
                    dC = tl.dot((gamma * coef).to(OP), B_pre, acc=dC, input_precision=DOT_PREC)
                    dgain += tl.sum(coef * cb_pre, axis=1)
                if HAS_I0:  # noqa: SIM102 (enter0 exists only when HAS_I0)
                    if enter0:  # the first sequence reads the initial state's sink
                        I0 = tl.load(I0_ptr + (b * H + h) * P * N + pn, mask=pn_ok, other=0.0).to(
                            OP
                        )
                        dy_enter = tl.where(enters[:, None], dy32, 0.0)
                        dC = tl.dot((gamma * dy_enter).to(OP), I0, acc=dC, input_precision=DOT_PREC)
                        i0_c = tl.dot(Ct, tl.trans(I0), input_precision=DOT_PREC)  # (Q, P) I0 C_tau
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

            out = ((b * L + t[:, None]) * G + g) * N + n[None, :]
            tl.store(
                dB_ptr + out, dB.to(dB_ptr.dtype.element_ty), mask=t_ok[:, None] & n_ok[None, :]
            )
            tl.store(
                dC_ptr + out, dC.to(dC_ptr.dtype.element_ty), mask=t_ok[:, None] & n_ok[None, :]
            )
            if HAS_SINK:
                dsk_ptrs = dsk_ptr + ((((b * nc + c) * SP + s[:, None]) * G + g) * N + n[None, :])
                tl.store(dsk_ptrs, dsk, mask=s_ok[:, None] & n_ok[None, :])
