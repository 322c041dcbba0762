"""Chunked SSD with sinks in plain PyTorch (spec section 5): the CPU path and the reference
every Triton kernel is tested against.

Decay products are only formed inside a chunk from chunk-local cumulative sums; chunks
exchange states sequentially. All cumulative sums, exponentials, states and accumulations
run in float32 (float64 when the input is float64); the output takes the input dtype.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from gfssm.kernels.ssd.segments import Segments, segments_of
from gfssm.kernels.state import ScanState


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def discretize(
    dt: torch.Tensor,
    dt_bias: torch.Tensor | None,
    dt_softplus: bool,
    dt_limit: tuple[float, float],
    dtype: torch.dtype,
) -> torch.Tensor:
    """``Delta = clip(softplus(dt + dt_bias), lo, hi)`` in ``dtype``; dt: (b, L, H)."""
    delta = dt.to(dtype)
    if dt_bias is not None:
        delta = delta + dt_bias.to(dtype)
    if dt_softplus:
        delta = F.softplus(delta)
    return delta.clamp(min=dt_limit[0], max=dt_limit[1])


def _pad_time(t: torch.Tensor, pad: int, value: float = 0.0) -> torch.Tensor:
    """Pad dim 1 (time) on the right by ``pad`` positions."""
    if pad == 0:
        return t
    shape = list(t.shape)
    shape[1] = pad
    return torch.cat([t, t.new_full(shape, value)], dim=1)


def learned_sink_readout(
    C: torch.Tensor, sink_k: torch.Tensor, sink_v: torch.Tensor, nheads: int
) -> torch.Tensor:
    """``K C_t`` with ``K = sum_s v_s k_s^T`` kept in low-rank form.

    C: (..., G, N), sink_k: (S, G, N), sink_v: (S, H, P) -> (..., H, P).
    """
    G = C.shape[-2]
    kc = torch.einsum("...gn,sgn->...gs", C, sink_k.to(C.dtype))
    v = sink_v.to(C.dtype).reshape(sink_v.shape[0], G, nheads // G, sink_v.shape[-1])
    out = torch.einsum("...gs,sgjp->...gjp", kc, v)
    return out.reshape(*C.shape[:-2], nheads, sink_v.shape[-1])


def ssd_scan_reference(
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
    """Chunked scan; arguments as :func:`gfssm.kernels.ssd_scan` (already validated).

    x: (b, L, H, P), dt: (b, L, H), A: (H,), B and C: (b, L, G, N) -> y: (b, L, H, P).
    """
    b, L, H, P = x.shape
    G, N = B.shape[-2:]
    hpg = H // G
    cdt = compute_dtype(x.dtype)
    Q = chunk_size
    nc = max(1, -(-L // Q))
    pad = nc * Q - L
    seen0 = initial_state.seen if initial_state is not None else None
    seg = segments_of(seq_idx, b, L, x.device, seen0)

    delta = discretize(dt, dt_bias, dt_softplus, dt_limit, cdt)  # (b, L, H)
    xc, Bc, Cc = x.to(cdt), B.to(cdt), C.to(cdt)
    # Padding has Delta = 0: it neither decays nor feeds the state.
    delta_p = _pad_time(delta, pad).view(b, nc, Q, H)
    x_p = _pad_time(xc, pad).view(b, nc, Q, G, hpg, P)
    B_p = _pad_time(Bc, pad).view(b, nc, Q, G, N)
    C_p = _pad_time(Cc, pad).view(b, nc, Q, G, N)
    seg_p = torch.cat([seg.ids, seg.ids[:, -1:].expand(b, pad)], dim=1).view(b, nc, Q)

    # Chunk-local log decay l_tau = sum_{k<=tau} Delta_k A (restarts every chunk).
    log_a = delta_p * A.to(cdt)
    l_cum = torch.cumsum(log_a, dim=2)  # (b, nc, Q, H)
    l_h = l_cum.permute(0, 1, 3, 2)  # (b, nc, H, Q)

    # Delta folded into x once: the diagonal blocks and the chunk states both use Delta x.
    xd = x_p * delta_p.view(b, nc, Q, G, hpg, 1)

    # Intra-chunk (diagonal blocks): the masked quadratic form. The causal / same-sequence
    # mask is applied to C.B (G-sized, cheaper than per head); decays above the diagonal are
    # clamped to exp(0) first, so a masked entry is 1 * 0, never inf * 0.
    mask = torch.ones(Q, Q, dtype=torch.bool, device=x.device).tril()[None, None, None]
    if seq_idx is not None:
        mask = mask & (seg_p[:, :, :, None] == seg_p[:, :, None, :])[:, :, None]
    cb = torch.einsum("bcqgn,bcsgn->bcgqs", C_p, B_p).masked_fill(~mask, 0.0)
    seg_decay = torch.exp((l_h[..., :, None] - l_h[..., None, :]).clamp(max=0.0))
    w = seg_decay.view(b, nc, G, hpg, Q, Q) * cb[:, :, :, None]
    y = torch.einsum("bcgjqs,bcsgjp->bcqgjp", w, xd)

    if n_init > 0 and sink_gain is not None:
        y = _init_tokens_in_chunk(y, cb, x_p, delta_p, seg.pos < n_init, sink_gain.to(cdt), pad)

    # States each chunk contributes at its end, from the segment its last position is in.
    l_last = l_cum[:, :, -1:, :]  # (b, nc, 1, H)
    in_last_seg = (seg_p == seg_p[:, :, -1:])[..., None]  # (b, nc, Q, 1)
    to_end = torch.exp((l_last - l_cum).masked_fill(~in_last_seg, -math.inf))
    chunk_states = torch.einsum(
        "bcsgj,bcsgn,bcsgjp->bcgjpn", to_end.view(b, nc, Q, G, hpg), B_p, xd
    )  # (b, nc, G, hpg, P, N)

    # Pass states between chunks sequentially in the compute dtype.
    seg_end = seg_p[:, :, -1]  # (b, nc)
    seg_before = torch.cat([seg_p.new_zeros(b, 1), seg_end[:, :-1]], dim=1)
    carry = torch.exp(l_last[:, :, 0, :]) * (seg_end == seg_before)[..., None]  # (b, nc, H)
    if initial_state is not None:
        state = initial_state.ssm.to(cdt).view(b, G, hpg, P, N)
    else:
        state = x.new_zeros((b, G, hpg, P, N), dtype=cdt)
    states_before = []
    # unbind, not indexing: the backward of one unbind is one stack, while per-chunk
    # indexing would scatter into a zero tensor of all chunks at every step (O(nc^2)).
    for carry_c, chunk_c in zip(carry.unbind(1), chunk_states.unbind(1)):
        states_before.append(state)
        state = state * carry_c.view(b, G, hpg, 1, 1) + chunk_c
    prev = torch.stack(states_before, dim=1)  # (b, nc, G, hpg, P, N)

    # Off-diagonal blocks: exp(l_tau) S_{c-1} C_tau within the segment that entered the chunk.
    enters = (seg_p == seg_before[..., None])[..., None]  # (b, nc, Q, 1)
    read_decay = (torch.exp(l_cum) * enters).view(b, nc, Q, G, hpg, 1)
    y = y + torch.einsum("bcqgn,bcgjpn->bcqgjp", C_p, prev) * read_decay

    low_rank = _low_rank_reads(
        seg, seg_p, delta, xc, Bc, C_p, sink_k, sink_v,
        None if sink_gain is None else sink_gain.to(cdt), n_init,
    )  # fmt: skip
    if low_rank is not None:
        y = y + low_rank
    if initial_state is not None and sink_gain is not None:
        # gamma * I_0 C_tau for the stream's first sequence.
        first = (seg_p == 0).view(b, nc, Q, 1, 1, 1)
        i0 = initial_state.init_sink.to(cdt).view(b, G, hpg, P, N)
        gain = sink_gain.to(cdt).view(1, 1, 1, G, hpg, 1)
        y = y + torch.einsum("bcqgn,bgjpn->bcqgjp", C_p, i0) * gain * first

    y = y.reshape(b, nc * Q, H, P)[:, :L]
    if D is not None:
        y = y + xc * D.to(cdt)[:, None]
    y = y.to(x.dtype)
    if not return_final_state:
        return y

    final = ScanState(
        ssm=state.reshape(b, H, P, N),
        init_sink=_final_init_sink(seg, delta, xc, Bc, n_init, initial_state, H),
        seen=seg.final_seen(),
    )
    return y, final


def _init_tokens_in_chunk(
    y: torch.Tensor,
    cb: torch.Tensor,
    x_p: torch.Tensor,
    delta_p: torch.Tensor,
    is_init: torch.Tensor,
    gain: torch.Tensor,
    pad: int,
) -> torch.Tensor:
    """Add ``gamma I C_tau`` for initial tokens in the same chunk as tau.

    Only chunks that hold an initial token get the extra masked product (one chunk per
    sequence unless sequences are packed). cb: (b, nc, G, Q, Q) masked C.B, is_init: (b, L).
    """
    b, nc, Q, G, hpg, P = x_p.shape
    init_p = _pad_time(is_init, pad, False).view(b, nc, Q)
    chunks = init_p.any(dim=2).any(dim=0).nonzero()[:, 0]
    if chunks.numel() == 0:
        return y
    coef = (delta_p[:, chunks] * init_p[:, chunks, :, None] * gain).permute(0, 1, 3, 2)
    w = coef.reshape(b, -1, G, hpg, 1, Q) * cb[:, chunks, :, None]  # (b, k, G, hpg, Q, Q)
    y_sink = torch.einsum("bcgjqs,bcsgjp->bcqgjp", w, x_p[:, chunks])
    return y.index_add(1, chunks, y_sink)


def _low_rank_reads(
    seg: Segments,
    seg_p: torch.Tensor,
    delta: torch.Tensor,
    x: torch.Tensor,
    B: torch.Tensor,
    C_p: torch.Tensor,
    sink_k: torch.Tensor | None,
    sink_v: torch.Tensor | None,
    gain: torch.Tensor | None,
    n_init: int,
) -> torch.Tensor | None:
    """The low-rank sink read-outs in one product: ``K C_tau`` with the learned slots
    ``K = sum_s v_s k_s^T``, and ``gamma I C_tau`` for initial tokens in earlier chunks.

    Only the sequence that enters chunk ``c`` can have initial tokens before it, at most
    ``n_init`` of them, so both terms are (key, value) pairs: keys (b, nc, R, G, N), values
    (b, nc, R, G, hpg, P). Returns (b, nc, Q, G, hpg, P), or None when there is no sink.
    """
    b, L, H, P = x.shape
    G, N = B.shape[-2:]
    hpg = H // G
    nc, Q = seg_p.shape[1:]
    keys, values, read_masks = [], [], []
    if sink_k is not None and sink_v is not None:
        S = sink_k.shape[0]
        keys.append(sink_k.to(C_p.dtype).expand(b, nc, S, G, N))
        values.append(sink_v.to(C_p.dtype).view(S, G, hpg, P).expand(b, nc, S, G, hpg, P))
        read_masks.append(C_p.new_ones(b, nc, Q, 1, S))
    if n_init > 0 and gain is not None:
        chunk_start = torch.arange(nc, device=x.device) * Q
        start = seg.start[:, chunk_start]  # (b, nc) start of the sequence entering each chunk
        idx = start[..., None] + torch.arange(n_init, device=x.device)  # (b, nc, n_init)
        idx_c = idx.clamp(max=L - 1)
        pos = torch.gather(seg.pos, 1, idx_c.view(b, -1)).view(b, nc, n_init)
        valid = (idx < chunk_start[:, None]) & (pos < n_init)
        flat = idx_c.view(b, -1)
        d_i = torch.gather(delta, 1, flat[..., None].expand(-1, -1, H)).view(b, nc, n_init, H)
        x_i = torch.gather(x, 1, flat[..., None, None].expand(-1, -1, H, P))
        x_i = x_i.view(b, nc, n_init, H, P) * (d_i * valid[..., None] * gain)[..., None]
        keys.append(
            torch.gather(B, 1, flat[..., None, None].expand(-1, -1, G, N)).view(b, nc, n_init, G, N)
        )
        values.append(x_i.view(b, nc, n_init, G, hpg, P))
        # Positions of later sequences in the chunk do not read this sequence's sink.
        same = (seg_p == seg_p[:, :, :1]).to(C_p.dtype)  # (b, nc, Q)
        read_masks.append(same[..., None, None].expand(b, nc, Q, 1, n_init))
    if not keys:
        return None
    scores = torch.einsum("bcqgn,bcrgn->bcqgr", C_p, torch.cat(keys, dim=2))
    scores = scores * torch.cat(read_masks, dim=-1)
    return torch.einsum("bcqgr,bcrgjp->bcqgjp", scores, torch.cat(values, dim=2))


def _final_init_sink(
    seg: Segments,
    delta: torch.Tensor,
    x: torch.Tensor,
    B: torch.Tensor,
    n_init: int,
    initial_state: ScanState | None,
    H: int,
) -> torch.Tensor:
    """``I`` at the end of each row: the last sequence's initial tokens (plus ``I_0`` when
    the row holds one sequence). Returns (b, H, P, N)."""
    b, L, _, P = x.shape
    G, N = B.shape[-2:]
    hpg = H // G
    if initial_state is not None:
        keep = (seg.ids[:, -1] == 0).to(x.dtype).view(b, 1, 1, 1)
        sink = initial_state.init_sink.to(x.dtype) * keep
    else:
        sink = x.new_zeros(b, H, P, N)
    if n_init == 0:
        return sink
    last_start = seg.start[:, -1]  # (b,)
    idx = last_start[:, None] + torch.arange(n_init, device=x.device)  # (b, n_init)
    idx_c = idx.clamp(max=L - 1)
    pos = torch.gather(seg.pos, 1, idx_c)
    valid = (idx < L) & (pos < n_init)
    d_i = torch.gather(delta, 1, idx_c[..., None].expand(-1, -1, H)) * valid[..., None]
    x_i = torch.gather(x, 1, idx_c[..., None, None].expand(-1, -1, H, P))
    B_i = torch.gather(B, 1, idx_c[..., None, None].expand(-1, -1, G, N))
    B_h = B_i.repeat_interleave(hpg, dim=2)  # (b, n_init, H, N)
    return sink + torch.einsum("bkh,bkhp,bkhn->bhpn", d_i, x_i, B_h)
