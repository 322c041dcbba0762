"""The decode step of the scan in Triton: one token for a batch of streams (spec section 3).

One program per (stream, head, block of P) reads its state tiles once, advances ``S``
(and ``I`` while the stream is inside its first ``n_init`` tokens), reads out
``(S + K + gain * I) C + D x`` and writes the new states: decode is memory-bound on the
states, and each byte of them moves exactly twice.
"""

from __future__ import annotations

import triton
import triton.language as tl

from gfssm.kernels.triton_support import built_interpreted

BUILT_INTERPRETED = built_interpreted()


@triton.jit
def ssd_step_kernel(
    x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, K_ptr, gain_ptr, seen_ptr,
    S_ptr, I_ptr, y_ptr, S_out_ptr, I_out_ptr,
    H, HPG, P, N, n_init, lo, hi,
    sxb, sxh, sxp, sdb, sdh, sbb, sbg, sbn, scb, scg, scn,
    ssb, ssh, ssp, ssn, sib, sih, sip, sin,
    BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, HAS_K: tl.constexpr, HAS_GAIN: tl.constexpr,
):  # fmt: skip
    bh = tl.program_id(0)
    b = (bh // H).to(tl.int64)
    h = bh % H
    g = h // HPG
    p = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)
    n = tl.arange(0, BLOCK_N)
    p_ok, n_ok = p < P, n < N
    pn_ok = p_ok[:, None] & n_ok[None, :]

    z = tl.load(dt_ptr + b * sdb + h * sdh).to(tl.float32)
    if HAS_BIAS:
        z += tl.load(bias_ptr + h).to(tl.float32)
    if SOFTPLUS:
        z = tl.where(z > 20.0, z, tl.where(z < -15.0, tl.exp(z), tl.log(1.0 + tl.exp(z))))
    delta = tl.minimum(tl.maximum(z, lo), hi)
    decay = tl.exp(tl.minimum(delta * tl.load(A_ptr + h).to(tl.float32), 0.0))

    x = tl.load(x_ptr + b * sxb + h * sxh + p * sxp, mask=p_ok, other=0.0).to(tl.float32)
    Bv = tl.load(B_ptr + b * sbb + g * sbg + n * sbn, mask=n_ok, other=0.0).to(tl.float32)
    Cv = tl.load(C_ptr + b * scb + g * scg + n * scn, mask=n_ok, other=0.0).to(tl.float32)
    S_ptrs = S_ptr + b * ssb + h * ssh + p[:, None] * ssp + n[None, :] * ssn
    I_ptrs = I_ptr + b * sib + h * sih + p[:, None] * sip + n[None, :] * sin
    S = tl.load(S_ptrs, mask=pn_ok, other=0.0).to(tl.float32)
    I = tl.load(I_ptrs, mask=pn_ok, other=0.0).to(tl.float32)

    update = (delta * x)[:, None] * Bv[None, :]
    S = S * decay + update
    I = tl.where(tl.load(seen_ptr + b) < n_init, I + update, I)
    read = S
    if HAS_GAIN:
        read += tl.load(gain_ptr + h).to(tl.float32) * I
    if HAS_K:
        read += tl.load(K_ptr + (h * P + p[:, None]) * N + n[None, :], mask=pn_ok, other=0.0)
    y = tl.sum(read * Cv[None, :], axis=1)
    if HAS_D:
        y += tl.load(D_ptr + h).to(tl.float32) * x
    tl.store(y_ptr + (b * H + h) * P + p, y.to(y_ptr.dtype.element_ty), mask=p_ok)
    out = ((b * H + h) * P + p[:, None]) * N + n[None, :]
    tl.store(S_out_ptr + out, S, mask=pn_ok)
    tl.store(I_out_ptr + out, I, mask=pn_ok)
