"""Run several independent causal streams through the model at once, one batch row each.

A stream is one pass over a stretch of one strand (an item's forward or reverse-complement
pass). Each row carries its own cache from piece to piece, so a row's predictions are those
of its stream alone: rows never see each other, and a stream that ends early is padded at
its end (a causal model cannot look at the padding) and then dropped from the batch.
Batching replaces many small calls by one large one: the per-call overheads and the scan's
sequential loop over chunks are paid once for ``b`` rows instead of once per stream.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from gfssm import GFSSMForCausalLM
from gfssm.tasks.dna.objective import base_log_probs
from gfssm.tasks.dna.tokens import N_BASES

LOG2E = 1.0 / math.log(2.0)


@dataclass
class Stream:
    """``length`` tokens read in stream order by ``tokens(a, b)`` (int64 array (b - a,)).

    The prediction of stream position ``s`` (from positions ``< s``) lands at index
    ``offset + step * s`` of ``log2_prob`` / ``entropy_bits`` (and the token at that index of
    ``base`` if given) when that index is inside ``[0, len(log2_prob))``; ``step`` is 1 for
    a forward pass and -1 for a reverse-complement pass read backwards.
    """

    tokens: Callable[[int, int], np.ndarray]
    length: int
    log2_prob: np.ndarray
    entropy_bits: np.ndarray
    offset: int
    step: int
    base: np.ndarray | None = None

    def kept(self, a: int, b: int) -> tuple[int, int]:
        """The stream positions ``[lo, hi)`` within ``[a, b)`` whose index is kept."""
        n = len(self.log2_prob)
        if self.step == 1:
            lo, hi = -self.offset, n - self.offset
        else:
            lo, hi = self.offset - n + 1, self.offset + 1
        return max(a, lo), min(b, hi)

    def write(self, a: int, lp: np.ndarray, ent: np.ndarray, tokens: np.ndarray) -> int:
        """Store the scores of stream positions ``[a, a + len(lp))``; returns how many."""
        lo, hi = self.kept(a, a + len(lp))
        if hi <= lo:
            return 0
        src = slice(lo - a, hi - a)
        if self.step == 1:
            dst = slice(self.offset + lo, self.offset + hi)
            self.log2_prob[dst] = lp[src]
            self.entropy_bits[dst] = ent[src]
            if self.base is not None:
                self.base[dst] = tokens[src]
        else:
            dst = slice(self.offset - hi + 1, self.offset - lo + 1)
            self.log2_prob[dst] = lp[src][::-1]
            self.entropy_bits[dst] = ent[src][::-1]
            if self.base is not None:
                self.base[dst] = tokens[src][::-1]
        return hi - lo


def run_streams(
    model: GFSSMForCausalLM,
    streams: list[Stream],
    piece_length: int,
    device: torch.device,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Score every stream, all of them as rows of one batch (callers bound their number).

    Each call feeds ``piece_length`` tokens per row, tokens (b, piece) -> logits
    (b, piece, V); the piece does not depend on how many rows run, so an item's floats do
    not depend on which items share its batch; the log-softmax, the pick of the next token's probability and the
    entropy run on the whole batch in torch, and only (b, piece) float32 arrays reach numpy.
    A stream's first position has no prediction: NaN (the caller decides what it gets).
    """
    streams = [s for s in streams if s.length > 0]
    if not streams:
        return
    b = len(streams)
    cache = model.allocate_cache(b, device=device)
    # prediction rows (b, 4) for the first position of each row's next piece
    carry = torch.full((b, N_BASES), math.nan, dtype=torch.float32, device=device)
    pos = 0  # every live row is at the same stream position
    live = list(range(b))
    ids_buf = np.zeros((b, piece_length), np.int64)  # reused: padding stays token 0 (A)
    while live:
        take = [min(piece_length, streams[i].length - pos) for i in live]
        width = max(take)
        ids_np = ids_buf[: len(live), :width]
        for row, (i, n) in enumerate(zip(live, take)):
            ids_np[row, :n] = streams[i].tokens(pos, pos + n)
            ids_np[row, n:] = 0
        ids = torch.from_numpy(ids_np).to(device)
        logp = base_log_probs(model(ids, cache=cache)) * LOG2E  # (b, width, 4)
        rows = torch.cat([carry[:, None], logp[:, :-1]], dim=1)  # prediction of each token
        carry = logp[:, -1]
        is_base = ids < N_BASES
        picked = rows.gather(-1, ids.clamp(max=N_BASES - 1)[..., None])[..., 0]
        entropy = -(torch.exp2(rows) * rows).sum(-1)
        nan = torch.tensor(math.nan, device=device)
        lp_np = torch.where(is_base, picked, nan).cpu().numpy()
        ent_np = torch.where(is_base, entropy, nan).cpu().numpy()
        done = 0
        for row, (i, n) in enumerate(zip(live, take)):
            done += streams[i].write(pos, lp_np[row, :n], ent_np[row, :n], ids_np[row, :n])
        if progress and done:
            progress(done)
        pos += width
        still = [row for row, i in enumerate(live) if streams[i].length > pos]
        if len(still) < len(live):
            if still:  # drop finished rows from the batch, cache and carry alike
                index = torch.tensor(still, device=device)
                cache = cache.select(index)
                carry = carry.index_select(0, index)
            live = [live[row] for row in still]
