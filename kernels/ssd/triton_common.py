"""Triton device functions shared by the scan kernels: discretisation of dt and the
per-chunk sequence masks (spec sections 3 to 5). Everything here is float32."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def discretize(dt_ptrs, rows_ok, bias, lo, hi, SOFTPLUS: tl.constexpr):
    """``Delta`` of :func:`discretize_with_slope` alone."""
    delta, slope = discretize_with_slope(dt_ptrs, rows_ok, bias, lo, hi, SOFTPLUS)
    return delta


@triton.jit
def discretize_with_slope(dt_ptrs, rows_ok, bias, lo, hi, SOFTPLUS: tl.constexpr):
    """``Delta = clip(softplus(dt + bias), lo, hi)`` and ``dDelta/d dt``; 0 on padded rows.

    softplus follows torch (linear above 20); the clip passes gradient where
    ``lo <= value <= hi`` like ``torch.clamp``.
    """
    z = tl.load(dt_ptrs, mask=rows_ok, other=0.0).to(tl.float32) + bias
    if SOFTPLUS:
        # exp(z) alone where log(1 + exp(z)) would round to 0 in float32.
        soft = tl.where(z > 20.0, z, tl.where(z < -15.0, tl.exp(z), tl.log(1.0 + tl.exp(z))))
        slope = tl.where(z > 20.0, 1.0, tl.sigmoid(z))
    else:
        soft = z
        slope = tl.full(z.shape, 1.0, tl.float32)
    delta = tl.minimum(tl.maximum(soft, lo), hi)
    slope = tl.where((soft >= lo) & (soft <= hi) & rows_ok, slope, 0.0)
    return tl.where(rows_ok, delta, 0.0), slope


@triton.jit
def chunk_segments(seg_row, t, rows_ok, c, L, Q: tl.constexpr, HAS_SEQ: tl.constexpr):
    """Masks of one chunk: ``enters`` (row is in the sequence entering the chunk, which
    reads the carried state), ``leaves`` (row is in the sequence the chunk's end belongs to,
    which feeds the carried state), ``carry`` (no sequence starts inside the chunk) and the
    per-row segment ids for the intra-chunk mask."""
    if HAS_SEQ:
        seg = tl.load(seg_row + t, mask=rows_ok, other=-1)
        before = tl.load(seg_row + tl.maximum(c * Q - 1, 0))
        before = tl.where(c > 0, before, 0)
        last = tl.load(seg_row + tl.minimum(c * Q + Q, L) - 1)
        enters = seg == before
        leaves = seg == last
        carry = last == before
    else:
        seg = tl.zeros(t.shape, dtype=tl.int32)
        enters = rows_ok | True
        leaves = rows_ok | True
        carry = c >= 0  # a scalar True of the same type as the packed case
    return seg, enters, leaves, carry


@triton.jit
def intra_mask(seg, q, HAS_SEQ: tl.constexpr):
    """(Q, Q) [tau, sigma]: sigma <= tau inside one sequence."""
    mask = q[:, None] >= q[None, :]
    if HAS_SEQ:
        mask = mask & (seg[:, None] == seg[None, :])
    return mask


@triton.jit
def decay_matrix(l, mask):
    """``exp(l_tau - l_sigma)`` where ``mask``, else exactly 0: -inf goes in before exp,
    and the exponent is clamped at 0 so no masked or rounding-positive entry can blow up."""
    diff = tl.where(mask, l[:, None] - l[None, :], float("-inf"))
    return tl.exp(tl.minimum(diff, 0.0))


@triton.jit
def load_rows(base, rows, rows_ok, cols, cols_ok, s_row, s_col):
    """A (rows, cols) tile in the tensor's dtype, zero outside the masks; 64-bit row
    offsets, so long rows of a wide strided input cannot overflow."""
    ptrs = base + rows.to(tl.int64)[:, None] * s_row + cols[None, :] * s_col
    return tl.load(ptrs, mask=rows_ok[:, None] & cols_ok[None, :], other=0.0)


@triton.jit
def advance_state(
    S, x_head, B_grp, dt_head, seg_row, c, L, A_h, bias_h, lo, hi, p, p_ok, n, n_ok, q,
    sxl, sxp, sbl, sbn, sdl,
    Q: tl.constexpr, HAS_SEQ: tl.constexpr, SOFTPLUS: tl.constexpr, DOT_PREC: tl.constexpr,
):  # fmt: skip
    """The fp32 state entering chunk ``c`` -> the state entering chunk ``c + 1``."""
    OP = x_head.dtype.element_ty
    t = c * Q + q
    t_ok = t < L
    delta = discretize(dt_head + t * sdl, t_ok, bias_h, lo, hi, SOFTPLUS)
    l = tl.cumsum(delta * A_h, axis=0)
    l_last = tl.sum(delta * A_h, axis=0)
    seg, enters, leaves, carry = chunk_segments(seg_row, t, t_ok, c, L, Q, HAS_SEQ)
    xt = load_rows(x_head, t, t_ok, p, p_ok, sxl, sxp)
    Bt = load_rows(B_grp, t, t_ok, n, n_ok, sbl, sbn).to(OP)
    to_end = tl.where(leaves, tl.exp(tl.minimum(l_last - l, 0.0)) * delta, 0.0)
    S = S * tl.where(carry, tl.exp(l_last), 0.0)
    xw = (xt.to(tl.float32) * to_end[:, None]).to(OP)
    return S + tl.dot(tl.trans(xw), Bt, input_precision=DOT_PREC)


@triton.jit
def retreat_adjoint(
    GS, dy_head, C_grp, dt_head, seg_row, c, L, A_h, bias_h, lo, hi, p, p_ok, n, n_ok, q,
    syl, syp, scl, scn, sdl,
    Q: tl.constexpr, HAS_SEQ: tl.constexpr, SOFTPLUS: tl.constexpr, DOT_PREC: tl.constexpr,
):  # fmt: skip
    """dL/dS after chunk ``c`` -> dL/dS after chunk ``c - 1`` (the state entering ``c``)."""
    OP = dy_head.dtype.element_ty
    t = c * Q + q
    t_ok = t < L
    delta = discretize(dt_head + t * sdl, t_ok, bias_h, lo, hi, SOFTPLUS)
    l = tl.cumsum(delta * A_h, axis=0)
    l_last = tl.sum(delta * A_h, axis=0)
    seg, enters, leaves, carry = chunk_segments(seg_row, t, t_ok, c, L, Q, HAS_SEQ)
    dyt = load_rows(dy_head, t, t_ok, p, p_ok, syl, syp)
    c_read = load_rows(C_grp, t, t_ok, n, n_ok, scl, scn).to(tl.float32)
    c_read = c_read * tl.where(enters, tl.exp(l), 0.0)[:, None]
    GS = GS * tl.where(carry, tl.exp(l_last), 0.0)
    return GS + tl.dot(tl.trans(dyt), c_read.to(OP), input_precision=DOT_PREC)
