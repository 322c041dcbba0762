"""Branching a stream without copying its state: ``k`` continuations of ``L`` tokens each
read the state every stream has reached, and none of them advances it.

These give, for every branch, the outputs :func:`~gfssm.kernels.fir_step` and
:func:`~gfssm.kernels.ssd_step` would give if the branch stepped its own copy of the
state. Stepping copies costs a state write per branch and token (``(H, P, N)`` and the FIR
window, per layer); here the carried state is read once per branch set (``C_t . S`` for
every branch query) and the branch's own tokens interact in an ``(L, L)`` matrix, so
scoring every single-base change of a genome with a few bases of look-ahead costs reads
only. Plain PyTorch on every device: the work is one batched matmul against the state,
with no sequential loop to fuse, so there is no Triton kernel and no dispatch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from gfssm.kernels.fir.reference import tap_mask
from gfssm.kernels.ssd.reference import compute_dtype, discretize, learned_sink_readout
from gfssm.kernels.state import ScanState


def fir_fork(
    x: torch.Tensor,
    window: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    kernel_sizes: torch.Tensor,
    *,
    activation: str | None = "silu",
) -> torch.Tensor:
    """Grouped FIR over ``L`` new inputs of ``k`` branches per stream.

    x: (b, k, L, C) branch inputs; window: (b, K_max-1, C), the stream's previous inputs,
    oldest first (a :class:`~gfssm.cache.LayerCache`'s ``fir_inputs``). Returns y
    (b, k, L, C); the window is not changed.
    """
    b, k, L, C = x.shape
    K = weight.shape[1]
    # lag j multiplies the input j steps back; masked taps are zero
    w = (weight * tap_mask(kernel_sizes, K).to(weight.dtype)).to(x.dtype)  # (C, K)
    w_by_age = w.flip(1)  # column m: the tap of window entry K-1-m steps back from t=0
    window = window.to(x.dtype)
    y = torch.zeros(b, k, L, C, device=x.device, dtype=x.dtype)
    for t in range(L):
        # the window's part is the same for every branch: entries t..K-2 are lags K-1+t-i
        if t < K - 1:
            shared = (window[:, t:] * w_by_age[:, : K - 1 - t].T).sum(1)  # (b, C)
            y[:, :, t] += shared[:, None]
        for lag in range(min(t, K - 1) + 1):
            y[:, :, t] += x[:, :, t - lag] * w[:, lag]
    if bias is not None:
        y = y + bias.to(x.dtype)
    return F.silu(y) if activation == "silu" else y


def _read_state(S: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """``C_t S`` for every branch query: S (b, H, P, N), C (b, k, L, G, N) -> (b, k, L, H,
    P). The heads of a B/C group share their queries: one matmul per stream and group over
    the state as it is laid out (no copy of S)."""
    b, H, P, N = S.shape
    _, k, L, G, _ = C.shape
    queries = C.permute(0, 3, 4, 1, 2).reshape(b, G, N, k * L)
    out = torch.matmul(S.reshape(b, G, H // G * P, N), queries)  # (b, G, H/G P, k L)
    return out.reshape(b, H, P, k, L).permute(0, 3, 4, 1, 2)


def _per_group(t: torch.Tensor, G: int) -> torch.Tensor:
    """(b, k, L, H, ...) -> (b, k, G, H/G, L, ...): heads split by B/C group, time inner."""
    b, k, L, H = t.shape[:4]
    return t.transpose(2, 3).reshape(b, k, G, H // G, L, *t.shape[4:])


def ssd_fork(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    *,
    state: ScanState,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = True,
    dt_limit: tuple[float, float] = (0.0, math.inf),
    sink_k: torch.Tensor | None = None,
    sink_v: torch.Tensor | None = None,
    sink_gain: torch.Tensor | None = None,
    n_init: int = 0,
) -> torch.Tensor:
    """The scan's outputs for ``k`` branches of ``L`` tokens from each stream's state.

    x: (b, k, L, H, P), dt: (b, k, L, H), B and C: (b, k, L, G, N); state: ScanState of
    (b, H, P, N) (not changed). Returns y (b, k, L, H, P) in x's dtype.

    Step t of a branch holds ``S_t = exp(cum_t) S + sum_{s<=t} exp(cum_t - cum_s) dt_s
    x_s B_s^T`` and ``I_t = I + sum_{s<=t, seen+s<n_init} dt_s x_s B_s^T``, and reads
    ``C_t (S_t + g I_t)`` plus the learned sinks and ``D x_t`` (:func:`ssd_step`).
    """
    b, k, L, H, P = x.shape
    G = B.shape[-2]
    cdt = compute_dtype(x.dtype)
    delta = discretize(dt, dt_bias, dt_softplus, dt_limit, cdt)  # (b, k, L, H)
    cum = torch.cumsum(delta * A.to(cdt), dim=2)
    Cc, xc = C.to(cdt), x.to(cdt)
    y = _read_state(state.ssm.to(cdt), Cc) * torch.exp(cum)[..., None]
    # the branch's own tokens, per group: CB[t, s] = C_t . B_s, used for s <= t
    CB = (Cc.permute(0, 1, 3, 2, 4) @ B.to(cdt).permute(0, 1, 3, 4, 2))[:, :, :, None]
    causal = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()
    cum_g, delta_g, x_g = _per_group(cum, G), _per_group(delta, G), _per_group(xc, G)
    gap = (cum_g[..., :, None] - cum_g[..., None, :]).masked_fill(~causal, -math.inf)
    weights = CB * torch.exp(gap) * delta_g[..., None, :]  # (b, k, G, H/G, L, L)

    def apply(w: torch.Tensor) -> torch.Tensor:  # (b, k, G, H/G, L, L) -> (b, k, L, H, P)
        return (w @ x_g).reshape(b, k, H, L, P).transpose(2, 3)

    y = y + apply(weights)
    if sink_gain is not None:
        gain = sink_gain.to(cdt).view(1, 1, 1, H, 1)
        read = _read_state(state.init_sink.to(cdt), Cc)
        # branch tokens that are among the stream's first n_init join the initial sink
        is_init = state.seen[:, None] + torch.arange(L, device=x.device)[None] < n_init
        joins = causal & is_init.view(b, 1, 1, 1, 1, L)  # over (t, s)
        read = read + apply((CB * delta_g[..., None, :]).masked_fill(~joins, 0.0))
        y = y + gain * read
    if sink_k is not None and sink_v is not None:
        y = y + learned_sink_readout(C.to(cdt), sink_k, sink_v, H)
    if D is not None:
        y = y + xc * D.to(cdt)[:, None]
    return y.to(x.dtype)
