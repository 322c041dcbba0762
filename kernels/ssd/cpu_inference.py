"""The chunked scan for inference on the CPU: the reference's math with fewer memory passes.

The plain reference (:mod:`gfssm.kernels.ssd.reference`) is written for autograd and for
packed rows; on the CPU, scoring a genome spends most of its time in that reference's
elementwise passes over (b, nc, H, Q, Q) and (b, L, H, P) tensors, not in its matrix
products. This version computes the same result for unpacked rows without autograd:

- the operands stay token-major, as the projections produce them, and all heads of a group
  share one product per chunk: (Q, N) @ (N, heads * P) instead of one small product per
  head (small batched products run far below the machine's matmul speed);
- the intra-chunk decay exp(l_tau - l_s) is factorised as exp(l_tau) exp(-l_s) where that
  cannot overflow (see ``LOG_DECAY_LIMIT``), so the (b, nc, H, Q, Q) decay tensor, ~2 KB per
  token through memory several times, is never built; the shared C.B product replaces it;
- the sinks that every position reads (the learned slots ``K``, ``gamma * I_0`` and the
  call's own initial tokens once seen) are constant over an unpacked row: one (H, P, N)
  matrix, read by one product accumulated in place.

It runs only where its assumptions hold (CPU tensors, no ``seq_idx``, gradients off):
:func:`gfssm.kernels.ssd.ssd_scan` decides, and ``GFSSM_KERNELS=reference`` forces the
plain reference. Tests compare the two on odd lengths, every option and streamed pieces.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from gfssm.kernels.ssd.reference import _pad_time, compute_dtype, discretize
from gfssm.kernels.state import ScanState

# The intra-chunk decay exp(l_tau - l_s) is factorised as exp(l_tau) * exp(-l_s) in chunks
# whose head decays by at most this much in log space (exp(40) ~ 2e17: far from float32
# overflow even after multiplying by C.B and x); faster-decaying (chunk, head) pairs get the
# exact (Q, Q) decay matrix of the reference.
LOG_DECAY_LIMIT = 40.0


def ssd_scan_cpu_inference(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    *,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = True,
    dt_limit: tuple[float, float] = (0.0, math.inf),
    chunk_size: int = 64,
    sink_k: torch.Tensor | None = None,
    sink_v: torch.Tensor | None = None,
    sink_gain: torch.Tensor | None = None,
    n_init: int = 0,
    seq_idx: torch.Tensor | None = None,
    initial_state: ScanState | None = None,
    return_final_state: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, ScanState]:
    """Arguments and result as :func:`gfssm.kernels.ssd_scan`, for ``seq_idx=None``.

    x: (b, L, H, P), dt: (b, L, H), A: (H,), B and C: (b, L, G, N) -> y: (b, L, H, P).
    """
    if seq_idx is not None:
        raise ValueError("ssd_scan_cpu_inference: packed rows (seq_idx) need the reference")
    b, L, H, P = x.shape
    G, N = B.shape[-2:]
    hpg = H // G
    W = hpg * P  # the columns of one group's heads
    cdt = compute_dtype(x.dtype)
    # an input shorter than a chunk is one chunk of its own length: padding it to a whole
    # chunk changes no result (Delta = 0 there) but costs a chunk's work per call, which is
    # most of a stream moved a few tokens at a time
    Q = min(chunk_size, L) if L else chunk_size
    nc = max(1, -(-L // Q))
    pad = nc * Q - L
    Lp = nc * Q
    m = b * nc  # chunks of all rows, the batch of every chunk product

    delta = discretize(dt, dt_bias, dt_softplus, dt_limit, cdt)  # (b, L, H)
    xc, Bf = x.to(cdt), B.to(cdt)
    delta_p = _pad_time(delta, pad)  # padding has Delta = 0: no decay, no input
    # Token-major inside each chunk, as the projections produce them: (m, Q, H, P) and
    # (m, Q, G, N); a group's heads are W adjacent columns, so one product serves them all.
    xd = _pad_time(xc, pad).view(m, Q, H, P) * delta_p.view(m, Q, H, 1)
    Bc = _pad_time(Bf, pad).view(m, Q, G, N)
    Cc = _pad_time(C.to(cdt), pad).view(m, Q, G, N)
    l_cum = torch.cumsum((delta_p * A.to(cdt)).view(m, Q, H), dim=1)  # l_tau, (m, Q, H)
    l_last = l_cum[:, -1:, :]

    # (chunk, head) pairs that decay by more than LOG_DECAY_LIMIT take exact per-head
    # products. The choice is made per chunk, so a row's result never depends on the other
    # rows of its batch (scores are promised independent of batching).
    fast = l_last < -LOG_DECAY_LIMIT  # (m, 1, H)
    fast_chunks = _fast_chunks(fast[:, 0])
    neg = (-l_cum).masked_fill(fast, -math.inf)
    # (Delta x)_s exp(-l_s), zero for fast pairs: (m, Q, G, W).
    xd_scaled = (xd * torch.exp(neg)[..., None]).view(m, Q, G, W)
    Bt = Bc.transpose(1, 3)  # (m, N, G, Q) views: B_g^T per chunk

    # Chunk states at chunk ends, sum_s exp(l_last - l_s) B_s (Delta x)_s^T, laid out
    # (m, G, N, hpg, P): exp(l_last) B_g^T @ xd_scaled, one (N, Q) @ (Q, W) per group.
    local = torch.empty(m, G, N, W, dtype=cdt, device=x.device)
    for g in range(G):
        local[:, g] = torch.bmm(Bt[:, :, g], xd_scaled[:, :, g])
    local = local.view(m, G, N, hpg, P).mul_(torch.exp(l_last).view(m, G, 1, hpg, 1))
    for h, idx in fast_chunks.items():
        xs = xd[idx, :, h] * torch.exp(l_last[idx, :, h] - l_cum[idx, :, h])[..., None]
        local[idx, h // hpg, :, h % hpg] = torch.bmm(Bt[idx, :, h // hpg], xs)
    state, prev = _pass_states(local.view(b, nc, G, N, hpg, P), l_last, initial_state, cdt)

    # y = exp(l_tau) (sum_{s<=tau} (C_tau . B_s) exp(-l_s) (Delta x)_s + C_tau S_{c-1}).
    causal = torch.ones(Q, Q, dtype=torch.bool, device=x.device).tril()
    cbs, ys = [], []
    for g in range(G):
        cbs.append(torch.bmm(Cc[:, :, g], Bt[:, :, g]).mul_(causal))  # (m, Q, Q)
        ys.append(torch.bmm(cbs[g], xd_scaled[:, :, g]).baddbmm_(Cc[:, :, g], prev[:, g]))
    y = ys[0] if G == 1 else torch.stack(ys, dim=2)
    y = y.view(m, Q, H, P).mul_(torch.exp(l_cum)[..., None])
    for h, idx in fast_chunks.items():
        # exp(l_tau - l_s), clamped to exp(0) above the diagonal, where cb is 0.
        lh = l_cum[idx, :, h]
        decay = (lh[:, :, None] - lh[:, None, :]).clamp_(max=0.0).exp_()
        y[idx, :, h] += torch.bmm(decay.mul_(cbs[h // hpg][idx]), xd[idx, :, h])

    out = y.view(b, Lp, H, P)
    init = _initial_tokens(xc, delta, Bf, n_init, initial_state) if n_init > 0 else None
    gain = None if sink_gain is None else sink_gain.to(cdt)
    _add_sinks(out, Cc.view(b, Lp, G, N), sink_k, sink_v, gain, initial_state, init)
    out = out[:, :L]
    if D is not None:
        out.addcmul_(xc, D.to(cdt)[:, None])
    y_out = out.to(x.dtype)
    if not return_final_state:
        return y_out
    # I after the row: the carried sink plus this call's initial tokens (gain or not).
    if initial_state is not None:
        init_sink, seen = initial_state.init_sink.to(cdt), initial_state.seen + L
    else:
        init_sink, seen = xc.new_zeros(b, H, P, N), torch.full((b,), L, device=x.device)
    if init is not None:
        init_sink = init_sink + init.sink
    return y_out, ScanState(ssm=state, init_sink=init_sink, seen=seen)


def _fast_chunks(fast: torch.Tensor) -> dict[int, torch.Tensor | slice]:
    """The chunks of each head that take exact products, fast: (m, H) bool -> {h: chunks}.

    A head whose every chunk is fast gets ``slice(None)``: indexing with it gives views, not
    the gathered copies (and scattered writes back) an index tensor costs. Heads with no
    fast chunk are left out.
    """
    counts = fast.sum(dim=0).tolist()
    m = fast.shape[0]
    return {
        h: slice(None) if n == m else fast[:, h].nonzero()[:, 0]
        for h, n in enumerate(counts)
        if n > 0
    }


def _pass_states(
    local: torch.Tensor, l_last: torch.Tensor, initial_state: ScanState | None, cdt: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """The sequential pass: S_c = exp(l_last,c) S_{c-1} + local_c, chunk after chunk.

    local: (b, nc, G, N, hpg, P), l_last: (b * nc, 1, H). Returns the final state
    (b, H, P, N) and the state entering each chunk, (b * nc, G, N, hpg * P).
    """
    b, nc, G, N, hpg, P = local.shape
    carry = torch.exp(l_last).view(b, nc, G, 1, hpg, 1)
    if initial_state is not None:
        ssm = initial_state.ssm.to(cdt).view(b, G, hpg, P, N)
        state = ssm.permute(0, 1, 4, 2, 3).contiguous()  # (b, G, N, hpg, P)
    else:
        state = local.new_zeros(b, G, N, hpg, P)
    prev = torch.empty_like(local)
    for c in range(nc):
        prev[:, c] = state
        state.mul_(carry[:, c]).add_(local[:, c])
    final = state.permute(0, 1, 3, 4, 2).reshape(b, G * hpg, P, N)
    return final, prev.view(b * nc, G, N, hpg * P)


class _InitialTokens(NamedTuple):
    """A row's initial tokens inside this call, its first ``k`` positions: keys B
    (b, k, G, N), values Delta x (b, k, H, P) (zero past the row's initial tokens), and
    their sum into the sink, sum_s Delta_s x_s B_s^T (b, H, P, N)."""

    keys: torch.Tensor
    values: torch.Tensor
    sink: torch.Tensor


def _initial_tokens(
    x: torch.Tensor,
    delta: torch.Tensor,
    B: torch.Tensor,
    n_init: int,
    initial_state: ScanState | None,
) -> _InitialTokens | None:
    """The initial tokens (the first ``n_init - seen`` positions of each row), or None when
    every row has seen ``n_init`` tokens already. x: (b, L, H, P), delta: (b, L, H)."""
    b, L, H = delta.shape
    k = min(n_init, L)
    seen = initial_state.seen if initial_state is not None else x.new_zeros(b, dtype=torch.long)
    valid = (torch.arange(k, device=x.device) + seen.view(b, 1)) < n_init  # (b, k)
    if not bool(valid.any()):
        return None
    values = x[:, :k] * (delta[:, :k] * valid[..., None])[..., None]
    keys = B[:, :k]
    per_head = keys.repeat_interleave(H // B.shape[2], dim=2)  # (b, k, H, N)
    sink = torch.einsum("bkhp,bkhn->bhpn", values, per_head)
    return _InitialTokens(keys=keys, values=values, sink=sink)


def _add_sinks(
    out: torch.Tensor,
    C: torch.Tensor,
    sink_k: torch.Tensor | None,
    sink_v: torch.Tensor | None,
    gain: torch.Tensor | None,
    initial_state: ScanState | None,
    init: _InitialTokens | None,
) -> None:
    """Add the sink read-outs in place: C_tau (K + gamma I_0 + gamma I_tau); ``gain``
    (gamma, (H,)) None means no initial-token reads.

    The learned slots K and the carried initial-token sink I_0 are the same for every
    position of an unpacked row, and so are this call's initial tokens once they have all
    been seen: one (H, P, N) matrix per row, read by one product. The first ``k`` positions
    then give back the initial tokens that come after them. out: (b, Lp, H, P), C: (b, Lp,
    G, N).
    """
    b, Lp, H, P = out.shape
    G, N = C.shape[-2:]
    hpg = H // G
    cdt = out.dtype
    if gain is None:
        init = None  # initial tokens are read only through the gain
    gamma = None if gain is None else gain.view(1, H, 1, 1)
    learned = sink_k is not None and sink_v is not None
    if not learned and init is None and (initial_state is None or gamma is None):
        return
    M = out.new_zeros(b, H, P, N)
    if learned:
        k = sink_k.to(cdt).repeat_interleave(hpg, dim=1)  # (S, H, N)
        M += torch.einsum("shp,shn->hpn", sink_v.to(cdt), k)
    if initial_state is not None and gamma is not None:
        M += initial_state.init_sink.to(cdt) * gamma
    if init is not None:
        M += init.sink * gamma
    Mg = M.view(b, G, hpg, P, N).permute(0, 1, 4, 2, 3).reshape(b, G, N, hpg * P)
    if G == 1:  # contiguous: accumulate in place
        out.view(b, Lp, hpg * P).baddbmm_(C[:, :, 0], Mg[:, 0])
    else:
        grouped = out.view(b, Lp, G, hpg * P)
        for g in range(G):
            grouped[:, :, g] += torch.bmm(C[:, :, g], Mg[:, g])
    if init is not None:
        k = init.keys.shape[1]
        later = torch.arange(k, device=out.device) > torch.arange(k, device=out.device)[:, None]
        scores = torch.einsum("bqgn,bsgn->bgqs", C[:, :k], init.keys) * later  # s > q
        vals = (init.values * gain[:, None]).view(b, k, G, hpg * P).transpose(1, 2)
        out[:, :k] -= torch.matmul(scores, vals).transpose(1, 2).reshape(b, k, H, P)
