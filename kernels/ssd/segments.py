"""Sequence boundaries inside packed rows (spec section 4, packing)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Segments:
    """Where each packed sequence starts, per position.

    ids:   (b, L) int64, 0 for the first sequence of each row, +1 at each change of seq_idx.
    start: (b, L) int64, index where the sequence holding each position starts.
    pos:   (b, L) int64, position inside its sequence; for the first sequence of a row it
           counts the tokens the stream had already seen (initial state).
    """

    ids: torch.Tensor
    start: torch.Tensor
    pos: torch.Tensor

    def final_seen(self) -> torch.Tensor:
        """(b,) tokens seen by the last sequence of each row, after the row."""
        return self.pos[:, -1] + 1


def segments_of(
    seq_idx: torch.Tensor | None,
    batch: int,
    length: int,
    device: torch.device,
    seen: torch.Tensor | None = None,
) -> Segments:
    """Segments from ``seq_idx`` (b, L) ints; a new sequence starts wherever it changes."""
    t = torch.arange(length, device=device)
    if seq_idx is None:
        ids = torch.zeros(batch, length, dtype=torch.long, device=device)
        start = torch.zeros_like(ids)
    else:
        change = torch.zeros(batch, length, dtype=torch.bool, device=device)
        change[:, 1:] = seq_idx[:, 1:] != seq_idx[:, :-1]
        ids = change.long().cumsum(dim=1)
        start = torch.cummax(torch.where(change, t, torch.zeros_like(t)), dim=1).values
    pos = t - start
    if seen is not None:
        pos = pos + torch.where(ids == 0, seen.to(device)[:, None], torch.zeros_like(pos))
    return Segments(ids=ids, start=start, pos=pos)
