"""Score one work item: a pure function of (model, genome, item, options).

The contig is read once, in pieces of ``piece_length`` bases; the model's streaming cache
carries the state from piece to piece, so every base is scored with all the context the
item reads, in memory that does not grow with the contig. Ray workers call
:func:`score_work_item` per item and get exactly what the single-process path gets.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from gfssm import GFSSMForCausalLM
from gfssm.tasks.dna.genome import Genome
from gfssm.tasks.dna.objective import base_log_probs
from gfssm.tasks.dna.scoring.plan import WorkItem
from gfssm.tasks.dna.tokens import N_BASES, reverse_complement

LOG2E = 1.0 / math.log(2.0)
#: the score of a base no stream has context for (a contig's first base, forward only):
#: the uniform prediction, log2(1/4) and 2 bits of entropy. The models are trained on plain
#: base windows without a ``<bos>`` token (see ``windows.make_batch``), so they have no
#: trained prediction from an empty context; the uniform one is what a model that knows
#: nothing predicts, and what a sequence compressor charges for its first symbol.
NO_CONTEXT_LOG2_PROB = -2.0
NO_CONTEXT_ENTROPY_BITS = 2.0


@dataclass(frozen=True)
class ScoringOptions:
    """piece_length: bases per model call; reverse_complement: also score the reverse
    strand and average per base."""

    piece_length: int = 65536
    reverse_complement: bool = False


@dataclass
class SegmentScores:
    """Per base of ``item``: log2 P(base | context) and the entropy (bits) of the
    prediction, NaN at N bases only (a base without any context gets the uniform
    prediction, :data:`NO_CONTEXT_LOG2_PROB`); base tokens (n,) uint8."""

    item: WorkItem
    log2_prob: np.ndarray
    entropy_bits: np.ndarray
    base: np.ndarray

    @classmethod
    def empty(cls, item: WorkItem) -> SegmentScores:
        n = item.length
        return cls(
            item,
            np.full(n, np.nan, np.float32),
            np.full(n, np.nan, np.float32),
            np.zeros(n, np.uint8),
        )


def _stream(
    model: GFSSMForCausalLM,
    tokens_of: Callable[[int, int], np.ndarray],
    begin: int,
    end: int,
    piece_length: int,
    device: torch.device,
    on_piece: Callable[[np.ndarray, np.ndarray, np.ndarray], None],
) -> None:
    """Feed stream positions ``[begin, end)`` (in the stream's own reading order) through
    the model; call ``on_piece(positions, log2_prob_rows (n, 4), tokens)`` with the
    prediction of each position from everything before it in the stream."""
    cache = model.allocate_cache(1, device=device)
    carry: np.ndarray | None = None  # prediction for the first base of the next piece
    pos = begin
    while pos < end:
        stop = min(end, pos + piece_length)
        tokens = tokens_of(pos, stop)
        ids = torch.from_numpy(tokens).to(device)[None]
        logp = base_log_probs(model(ids, cache=cache))[0].cpu().numpy() * LOG2E  # (n, 4)
        if carry is None:
            rows = np.concatenate([np.full((1, N_BASES), np.nan, np.float32), logp[:-1]])
        else:
            rows = np.concatenate([carry[None], logp[:-1]])
        carry = logp[-1]
        on_piece(np.arange(pos, stop), rows, tokens)
        pos = stop


def _entropy_bits(log2_rows: np.ndarray) -> np.ndarray:
    return -(np.exp2(log2_rows) * log2_rows).sum(axis=1)


@torch.inference_mode()
def score_work_item(
    model: nn.Module,
    genome: Genome,
    item: WorkItem,
    options: ScoringOptions | None = None,
    *,
    out: SegmentScores | None = None,
    progress: Callable[[int], None] | None = None,
) -> SegmentScores:
    """Scores of every base of ``item`` (into ``out`` if given, e.g. memory-mapped arrays).

    The forward pass streams ``[context_start, end)``; the optional reverse-complement pass
    streams ``[start, context_end)`` backwards on the other strand, and the two are averaged
    per base (a base scored by one pass only keeps that score). Every base but N is scored:
    the first base of a stream has no context, so it keeps the other strand's score or,
    forward only, gets the uniform prediction (a region or segment that starts after base
    0 with ``warmup`` > 0 reads the bases before it instead, so its first base has context).
    """
    options = options or ScoringOptions()
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    scores = out if out is not None else SegmentScores.empty(item)
    contig = item.contig

    def forward_tokens(a: int, b: int) -> np.ndarray:
        return genome.tokens(contig, a, b)[0]

    def keep_forward(positions: np.ndarray, rows: np.ndarray, tokens: np.ndarray) -> None:
        inside = positions >= item.start
        if not inside.any():
            return
        at = positions[inside] - item.start
        rows, tokens = rows[inside], tokens[inside]
        base_row = np.minimum(tokens, N_BASES - 1)
        lp = np.where(tokens < N_BASES, rows[np.arange(len(tokens)), base_row], np.nan)
        ent = np.where(tokens < N_BASES, _entropy_bits(rows), np.nan)
        scores.log2_prob[at] = lp
        scores.entropy_bits[at] = ent
        scores.base[at] = tokens
        if progress:
            progress(int(inside.sum()))

    try:
        _stream(
            model,
            forward_tokens,
            item.context_start,
            item.end,
            options.piece_length,
            device,
            keep_forward,
        )
        if options.reverse_complement:
            _reverse_pass(model, genome, item, options, scores, device, progress)
        if item.length and scores.base[0] < N_BASES and not np.isfinite(scores.log2_prob[0]):
            # no pass had context for the item's first base (it starts its forward stream)
            scores.log2_prob[0] = NO_CONTEXT_LOG2_PROB
            scores.entropy_bits[0] = NO_CONTEXT_ENTROPY_BITS
    finally:
        model.train(was_training)
    return scores


def _reverse_pass(model, genome, item, options, scores, device, progress) -> None:
    """Stream position ``s`` of the reverse strand is genomic base ``context_end - 1 - s``."""
    contig, top = item.contig, item.context_end

    def rc_tokens(a: int, b: int) -> np.ndarray:
        return reverse_complement(genome.tokens(contig, top - b, top - a)[0])

    def merge_rc(positions: np.ndarray, rows: np.ndarray, tokens: np.ndarray) -> None:
        genomic = top - 1 - positions
        inside = genomic < item.end
        if not inside.any():
            return
        at = genomic[inside] - item.start
        rows, tokens = rows[inside], tokens[inside]
        base_row = np.minimum(tokens, N_BASES - 1)
        lp = np.where(tokens < N_BASES, rows[np.arange(len(tokens)), base_row], np.nan)
        ent = np.where(tokens < N_BASES, _entropy_bits(rows), np.nan)
        scores.log2_prob[at] = _average(scores.log2_prob[at], lp)
        scores.entropy_bits[at] = _average(scores.entropy_bits[at], ent)
        if progress:
            progress(int(inside.sum()))

    _stream(model, rc_tokens, 0, top - item.start, options.piece_length, device, merge_rc)


def _average(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-element mean of two passes; where one is NaN the other is kept."""
    both = np.isfinite(a) & np.isfinite(b)
    return np.where(both, 0.5 * (a + b), np.where(np.isfinite(a), a, b)).astype(np.float32)
