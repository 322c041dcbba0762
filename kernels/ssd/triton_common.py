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
