"""Causal grouped FIR with SiLU fused, in Triton: forward, backward and the decode step.

Layout: x (b, L, C) with any strides (the layer passes a slice of its input projection),
weight (C, K) lag-indexed, taps ``k >= kernel_sizes[c]`` masked. Everything is accumulated
in float32; outputs take the dtype of x.

Kernels and their memory traffic (per element of x, E bytes each):

- forward: one program per (L-block, C-block, row) reads its x tile and the K-1 rows before
  it (from L2 after the first touch) and writes y: ~2E bytes, the minimum.
- backward, pass 1: recomputes the pre-activation, writes ``dpre = dy * silu'(pre)`` in
  float32, and accumulates ``dweight`` and ``dbias`` over a stretch of L in registers
  (partials per stretch are summed on the host, a (stretches, C, K) tensor);
- backward, pass 2: ``dx[s] = sum_k w[k] dpre[s + k]`` (taps never cross a sequence change),
  also writing the gradient of the initial inputs. Together ~3E + 8 bytes: dpre is
  materialised once because recomputing it per tap would cost K times the loads.
"""

from __future__ import annotations

import triton
import triton.language as tl

from gfssm.kernels.triton_support import built_interpreted, one_config_when_interpreting

BUILT_INTERPRETED = built_interpreted()

_CONFIGS = one_config_when_interpreting(
    [
        triton.Config({"BLOCK_L": bl, "BLOCK_C": bc}, num_warps=w)
        for bl, bc, w in [(64, 64, 4), (32, 128, 4), (128, 32, 4), (64, 128, 8), (16, 256, 4)]
    ],
    triton.Config({"BLOCK_L": 32, "BLOCK_C": 32}, num_warps=4),
)


@triton.jit
def _lagged_input(
    x_row, hist_row, seg_row, t, c, t_ok, c_ok, seg_t, k,
    sxl, sxc, shl, shc,
    K: tl.constexpr, HAS_SEQ: tl.constexpr, HAS_HIST: tl.constexpr,
):  # fmt: skip
    """x[t - k, c] in float32 for a (BLOCK_L, BLOCK_C) tile: zero before the start of the
    sequence holding t, taken from the initial inputs before position 0."""
    s = t - k
    inside = t_ok & (s >= 0)
    if HAS_SEQ:
        seg_s = tl.load(seg_row + s, mask=inside, other=-1)
        inside = inside & (seg_s == seg_t)
    ptr = x_row + s.to(tl.int64)[:, None] * sxl + c[None, :] * sxc
    v = tl.load(ptr, mask=inside[:, None] & c_ok[None, :], other=0.0).to(tl.float32)
    if HAS_HIST:
        before = t_ok & (s < 0)
        if HAS_SEQ:
            before = before & (seg_t == 0)  # initial inputs belong to the first sequence
        hptr = hist_row + (s + K - 1)[:, None] * shl + c[None, :] * shc
        v += tl.load(hptr, mask=before[:, None] & c_ok[None, :], other=0.0).to(tl.float32)
    return v


@triton.jit
def _pre_activation(
    x_row, hist_row, seg_row, w_ptr, bias_ptr, ks, t, c, t_ok, c_ok, seg_t,
    sxl, sxc, shl, shc, swc, swk,
    K: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_SEQ: tl.constexpr, HAS_HIST: tl.constexpr,
    BLOCK_L: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    acc = tl.zeros((BLOCK_L, BLOCK_C), dtype=tl.float32)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + c, mask=c_ok, other=0.0).to(tl.float32)[None, :]
    for k in tl.range(0, K):
        wk = tl.load(w_ptr + c * swc + k * swk, mask=c_ok & (ks > k), other=0.0).to(tl.float32)
        v = _lagged_input(
            x_row, hist_row, seg_row, t, c, t_ok, c_ok, seg_t, k,
            sxl, sxc, shl, shc, K, HAS_SEQ, HAS_HIST,
        )  # fmt: skip
        acc += wk[None, :] * v
    return acc


@triton.autotune(configs=_CONFIGS, key=["C", "K"])
@triton.jit
def _fir_fwd_kernel(
    x_ptr, w_ptr, bias_ptr, ks_ptr, seg_ptr, hist_ptr, y_ptr,
    L, C,
    sxb, sxl, sxc, swc, swk, shb, shl, shc,
    K: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_SEQ: tl.constexpr, HAS_HIST: tl.constexpr,
    SILU: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(2).to(tl.int64)
    t = tl.program_id(0) * BLOCK_L + tl.arange(0, BLOCK_L)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    t_ok, c_ok = t < L, c < C
    ks = tl.load(ks_ptr + c, mask=c_ok, other=0)
    seg_row = seg_ptr + row * L
    seg_t = tl.load(seg_row + t, mask=t_ok, other=0) if HAS_SEQ else 0
    acc = _pre_activation(
        x_ptr + row * sxb, hist_ptr + row * shb, seg_row, w_ptr, bias_ptr, ks, t, c, t_ok, c_ok,
        seg_t, sxl, sxc, shl, shc, swc, swk, K, HAS_BIAS, HAS_SEQ, HAS_HIST, BLOCK_L, BLOCK_C,
    )  # fmt: skip
    if SILU:
        acc = acc * tl.sigmoid(acc)
    ptr = y_ptr + row * L * C + t.to(tl.int64)[:, None] * C + c[None, :]
    tl.store(ptr, acc.to(y_ptr.dtype.element_ty), mask=t_ok[:, None] & c_ok[None, :])


@triton.autotune(configs=_CONFIGS, key=["C", "K"])
@triton.jit
def _fir_bwd_dpre_kernel(
    x_ptr, w_ptr, bias_ptr, ks_ptr, seg_ptr, hist_ptr, dy_ptr, dpre_ptr, dw_part_ptr, db_part_ptr,
    L, C, n_stretch,
    sxb, sxl, sxc, swc, swk, shb, shl, shc, sdyb, sdyl, sdyc,
    K: tl.constexpr, K_POW2: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_SEQ: tl.constexpr,
    HAS_HIST: tl.constexpr, SILU: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    """dpre for every L-block of the stretch, and the stretch's partial dweight/dbias."""
    row = tl.program_id(1).to(tl.int64)
    stretch = tl.program_id(2)
    c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = c < C
    ks = tl.load(ks_ptr + c, mask=c_ok, other=0)
    x_row, hist_row, seg_row = x_ptr + row * sxb, hist_ptr + row * shb, seg_ptr + row * L
    lag = tl.arange(0, K_POW2)
    dw = tl.zeros((BLOCK_C, K_POW2), dtype=tl.float32)
    db = tl.zeros((BLOCK_C,), dtype=tl.float32)
    for block in tl.range(stretch, tl.cdiv(L, BLOCK_L), n_stretch):
        t = block * BLOCK_L + tl.arange(0, BLOCK_L)
        t_ok = t < L
        seg_t = tl.load(seg_row + t, mask=t_ok, other=0) if HAS_SEQ else 0
        pre = _pre_activation(
            x_row, hist_row, seg_row, w_ptr, bias_ptr, ks, t, c, t_ok, c_ok, seg_t,
            sxl, sxc, shl, shc, swc, swk, K, HAS_BIAS, HAS_SEQ, HAS_HIST, BLOCK_L, BLOCK_C,
        )  # fmt: skip
        ok = t_ok[:, None] & c_ok[None, :]
        dy_ptrs = dy_ptr + row * sdyb + t.to(tl.int64)[:, None] * sdyl + c[None, :] * sdyc
        dp = tl.load(dy_ptrs, mask=ok, other=0.0).to(tl.float32)
        if SILU:
            sig = tl.sigmoid(pre)
            dp = dp * sig * (1.0 + pre * (1.0 - sig))
        dp = tl.where(ok, dp, 0.0)
        dpre_ptrs = dpre_ptr + row * L * C + t.to(tl.int64)[:, None] * C + c[None, :]
        tl.store(dpre_ptrs, dp, mask=ok)
        db += tl.sum(dp, axis=0)
        for k in tl.range(0, K):
            v = _lagged_input(
                x_row, hist_row, seg_row, t, c, t_ok, c_ok, seg_t, k,
                sxl, sxc, shl, shc, K, HAS_SEQ, HAS_HIST,
            )  # fmt: skip
            dw += tl.where(lag[None, :] == k, tl.sum(dp * v, axis=0)[:, None], 0.0)
    part = row * n_stretch + stretch
    dw = tl.where(lag[None, :] < ks[:, None], dw, 0.0)  # taps beyond K(c) get no gradient
    dw_ptrs = dw_part_ptr + part * C * K_POW2 + c[:, None] * K_POW2 + lag[None, :]
    tl.store(dw_ptrs, dw, mask=c_ok[:, None])
    tl.store(db_part_ptr + part * C + c, db, mask=c_ok)


@triton.autotune(configs=_CONFIGS, key=["C", "K"])
@triton.jit
def _fir_bwd_dx_kernel(
    dpre_ptr, w_ptr, ks_ptr, seg_ptr, dx_ptr, dhist_ptr,
    L, C, swc, swk,
    K: tl.constexpr, HAS_SEQ: tl.constexpr, HAS_HIST: tl.constexpr,
    BLOCK_L: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    """dx[s] = sum_k w[k] dpre[s + k] for s in [-(K-1), L): s < 0 are the initial inputs."""
    row = tl.program_id(2).to(tl.int64)
    s = tl.program_id(0) * BLOCK_L + tl.arange(0, BLOCK_L) - (K - 1)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    s_ok, c_ok = s < L, c < C
    ks = tl.load(ks_ptr + c, mask=c_ok, other=0)
    seg_row = seg_ptr + row * L
    # Initial inputs (s < 0) belong to the first sequence, segment 0.
    seg_s = tl.load(seg_row + s, mask=s_ok & (s >= 0), other=0) if HAS_SEQ else 0
    acc = tl.zeros((BLOCK_L, BLOCK_C), dtype=tl.float32)
    for k in tl.range(0, K):
        t = s + k
        valid = s_ok & (t >= 0) & (t < L)
        if HAS_SEQ:
            valid = valid & (tl.load(seg_row + t, mask=valid, other=-1) == seg_s)
        wk = tl.load(w_ptr + c * swc + k * swk, mask=c_ok & (ks > k), other=0.0).to(tl.float32)
        ptr = dpre_ptr + row * L * C + t.to(tl.int64)[:, None] * C + c[None, :]
        acc += wk[None, :] * tl.load(ptr, mask=valid[:, None] & c_ok[None, :], other=0.0)
    in_x = s_ok & (s >= 0)
    ptr = dx_ptr + row * L * C + s.to(tl.int64)[:, None] * C + c[None, :]
    tl.store(ptr, acc.to(dx_ptr.dtype.element_ty), mask=in_x[:, None] & c_ok[None, :])
    if HAS_HIST:
        ptr = dhist_ptr + row * (K - 1) * C + (s + K - 1)[:, None] * C + c[None, :]
        tl.store(ptr, acc.to(dhist_ptr.dtype.element_ty), mask=(s < 0)[:, None] & c_ok[None, :])


@triton.jit
def _fir_step_kernel(
    x_ptr, win_ptr, w_ptr, bias_ptr, ks_ptr, y_ptr, new_win_ptr,
    C, sxb, sxc, swb, swl, swin_c, swc, swk,
    K: tl.constexpr, HAS_BIAS: tl.constexpr, SILU: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    """One token per stream; window (b, K-1, C) holds the previous inputs, oldest first."""
    row = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = c < C
    ks = tl.load(ks_ptr + c, mask=c_ok, other=0)
    x = tl.load(x_ptr + row * sxb + c * sxc, mask=c_ok, other=0.0).to(tl.float32)
    acc = tl.zeros((BLOCK_C,), dtype=tl.float32)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + c, mask=c_ok, other=0.0).to(tl.float32)
    acc += x * tl.load(w_ptr + c * swc, mask=c_ok, other=0.0).to(tl.float32)
    out_row = new_win_ptr + row * (K - 1) * C
    for k in tl.static_range(1, K):
        v = tl.load(win_ptr + row * swb + (K - 1 - k) * swl + c * swin_c, mask=c_ok, other=0.0)
        wk = tl.load(w_ptr + c * swc + k * swk, mask=c_ok & (ks > k), other=0.0).to(tl.float32)
        acc += wk * v.to(tl.float32)
        if k < K - 1:  # the window moves one step: row K-1-k goes to row K-2-k
            tl.store(out_row + (K - 2 - k) * C + c, v.to(new_win_ptr.dtype.element_ty), mask=c_ok)
    if K > 1:
        tl.store(out_row + (K - 2) * C + c, x.to(new_win_ptr.dtype.element_ty), mask=c_ok)
    if SILU:
        acc = acc * tl.sigmoid(acc)
    tl.store(y_ptr + row * C + c, acc.to(y_ptr.dtype.element_ty), mask=c_ok)
