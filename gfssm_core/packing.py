"""Padding and packing helpers: turn lengths into ``seq_idx`` and reverse each sequence
inside its own extent (spec section 4)."""

from __future__ import annotations

import torch


def lengths_to_seq_idx(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(b,) valid lengths -> (b, L) ints: 0 on real positions, 1 on right padding, so that
    padding is a sequence of its own and nothing crosses into real positions."""
    t = torch.arange(max_len, device=lengths.device)
    return (t[None, :] >= lengths[:, None]).long()


def mask_padding(seq_idx: torch.Tensor | None, lengths: torch.Tensor | None, max_len: int):
    """Combine optional packing ``seq_idx`` and padding ``lengths`` into one ``seq_idx``
    (b, L) where padding forms its own sequence; also return the (b, L) bool valid mask."""
    if lengths is None:
        return seq_idx, None
    valid = torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]
    if seq_idx is None:
        return (~valid).long(), valid
    pad_id = seq_idx.max() + 1
    return torch.where(valid, seq_idx, pad_id), valid


def reverse_within_sequences(seq_idx: torch.Tensor | None, batch: int, length: int, device):
    """(b, L) index that maps position t to its mirror inside t's own sequence.

    ``x.gather(1, idx)`` reverses each packed sequence (or the whole row without seq_idx)
    in place; applying it twice is the identity.
    """
    t = torch.arange(length, device=device).expand(batch, length)
    if seq_idx is None:
        return (length - 1 - t).contiguous()
    change = torch.zeros(batch, length, dtype=torch.bool, device=device)
    change[:, 1:] = seq_idx[:, 1:] != seq_idx[:, :-1]
    ids = change.long().cumsum(dim=1)
    start = torch.cummax(torch.where(change, t, torch.zeros_like(t)), dim=1).values
    ends = torch.zeros(batch, length, dtype=torch.long, device=device).scatter_reduce(
        1, ids, t, reduce="amax", include_self=False
    )
    end = torch.gather(ends, 1, ids)
    return start + end - t


def gather_time(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x: (b, L, ...) reordered along time by index (b, L)."""
    expanded = index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return torch.gather(x, 1, expanded)
