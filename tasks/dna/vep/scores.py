"""Per-position predictions of all four bases, both strands, for the model and the baseline.

A variant's score is ``log2 P(alt) - log2 P(ref)`` at its position, each strand's
prediction from the bases upstream of it on that strand, averaged over the two strands. All
three alternatives at a position come from the same four-base prediction, so each region
around the CDS is streamed through the model once per strand (the model's streaming cache
carries the state from piece to piece, as in ``gfssm score genome``) instead of once per
variant. The Markov baseline gives the same four-base rows from its smoothed counts, with
the same context (nothing before the region's start on each strand).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from gfssm import GFSSMForCausalLM
from gfssm.tasks.dna.genome import Genome
from gfssm.tasks.dna.markov import MarkovModel
from gfssm.tasks.dna.objective import base_log_probs
from gfssm.tasks.dna.tokens import N_BASES, reverse_complement

MARKOV_PIECE = 1 << 20
LOG2E = 1.0 / np.log(2.0)


def _stream(
    model: GFSSMForCausalLM,
    tokens: np.ndarray,
    piece_length: int,
    on_piece: Callable[[np.ndarray, np.ndarray], None],
) -> None:
    """Feed a stream's ``tokens`` (L,) through the model in pieces, its streaming cache
    carrying the state (as ``gfssm score genome`` does); call ``on_piece(positions,
    rows)`` with the four-base log2 prediction (n, 4) of each position from everything
    before it in the stream (NaN for position 0, which has no context). Unlike the
    genome scorer, which keeps the true base's probability only, this keeps all four."""
    device = next(model.parameters()).device
    cache = model.allocate_cache(1, device=device)
    carry = np.full((1, N_BASES), np.nan, np.float32)  # the prediction of the next position
    for pos in range(0, tokens.size, piece_length):
        stop = min(tokens.size, pos + piece_length)
        ids = torch.from_numpy(tokens[pos:stop]).to(device)[None]
        logp = base_log_probs(model(ids, cache=cache))[0].float().cpu().numpy() * LOG2E
        on_piece(np.arange(pos, stop), np.concatenate([carry, logp[:-1]]))
        carry = logp[-1:]


@dataclass
class BaseRows:
    """At each wanted position: log2 P of A, C, G, T on the + strand's bases (m, 4),
    averaged over the strands that predict it, and the mean entropy (bits) (m,)."""

    log2_prob: np.ndarray
    entropy_bits: np.ndarray


def _entropy_bits(log2_rows: np.ndarray) -> np.ndarray:
    return -(np.exp2(log2_rows) * log2_rows).sum(axis=1)


def strand_mean(values: np.ndarray) -> np.ndarray:
    """(2, ...) -> (...): the mean over the strands that have a value (NaN: a strand had
    no context there; NaN on both stays NaN)."""
    with warnings.catch_warnings():  # all-NaN slices are expected, not an error
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=0)


def _combine(forward: np.ndarray, reverse: np.ndarray) -> BaseRows:
    """Average two strands' rows (NaN rows: a strand had no context there)."""
    both = np.stack([forward, reverse])  # (2, m, 4)
    entropy = np.stack([_entropy_bits(forward), _entropy_bits(reverse)])
    return BaseRows(strand_mean(both), strand_mean(entropy))


class _Collector:
    """Keeps the rows of the wanted genomic positions out of a stream of pieces."""

    def __init__(self, positions: np.ndarray) -> None:
        self.positions = positions
        self.rows = np.full((positions.size, N_BASES), np.nan, np.float32)

    def keep(self, genomic: np.ndarray, rows: np.ndarray) -> None:
        idx = np.searchsorted(self.positions, genomic)
        idx = np.minimum(idx, self.positions.size - 1)
        hit = self.positions[idx] == genomic
        self.rows[idx[hit]] = rows[hit]


Streams = list[tuple[np.ndarray, np.ndarray]]


def region_streams(genome: Genome, contig: str, regions: list[tuple[int, int]]) -> Streams:
    """Each region's tokens (L,) on the + strand and reverse-complemented, read once for
    every scorer of a work item."""
    streams = []
    for start, end in regions:
        forward = genome.tokens(contig, start, end)[0]
        streams.append((forward, reverse_complement(forward)))
    return streams


@torch.inference_mode()
def model_rows(
    model: GFSSMForCausalLM,
    regions: list[tuple[int, int]],
    streams: Streams,
    positions: np.ndarray,
    piece_length: int = 65536,
) -> BaseRows:
    """The model's four-base rows at ``positions`` (sorted, unique, inside ``regions``):
    each region streamed forward and, reverse-complemented, backward (``streams``, from
    :func:`region_streams`)."""
    was_training = model.training
    model.eval()
    forward, reverse = _Collector(positions), _Collector(positions)
    try:
        for (start, end), (plus, minus) in zip(regions, streams):

            def keep_forward(s: np.ndarray, rows: np.ndarray, first: int = start) -> None:
                forward.keep(first + s, rows)

            def keep_reverse(s: np.ndarray, rows: np.ndarray, top: int = end) -> None:
                # stream position s of the reverse strand is genomic base end - 1 - s; its
                # column c predicts the complement 3 - c: reversed columns are + strand bases
                reverse.keep(top - 1 - s, rows[:, ::-1])

            _stream(model, plus, piece_length, keep_forward)
            _stream(model, minus, piece_length, keep_reverse)
    finally:
        model.train(was_training)
    return _combine(forward.rows, reverse.rows)


def markov_log2_rows(markov: MarkovModel, tokens: np.ndarray, at: np.ndarray) -> np.ndarray:
    """(len(at), 4) log2 P of each base at positions ``at`` of ``tokens``, from at most
    ``order`` bases before it inside ``tokens`` (the sums of :meth:`MarkovModel.score`,
    for every base instead of the true one)."""
    return np.log2(markov.base_probs(tokens, at))


def baseline_rows(
    markov: MarkovModel,
    regions: list[tuple[int, int]],
    streams: Streams,
    positions: np.ndarray,
) -> BaseRows:
    """The Markov baseline's four-base rows at ``positions``, both strands, the same
    regions (context never reaches before a region's start on either strand)."""
    forward, reverse = _Collector(positions), _Collector(positions)
    lead = markov.order
    for (start, end), (tokens, rc) in zip(regions, streams):
        for strand_tokens, collector, is_rc in ((tokens, forward, False), (rc, reverse, True)):
            for a in range(0, tokens.size, MARKOV_PIECE):
                b = min(tokens.size, a + MARKOV_PIECE)
                first = max(0, a - lead)
                piece = strand_tokens[first:b]
                at = np.arange(a - first, b - first)
                stream_pos = np.arange(a, b)
                genomic = end - 1 - stream_pos if is_rc else start + stream_pos
                wanted = np.isin(genomic, positions)
                if not wanted.any():
                    continue
                rows = markov_log2_rows(markov, piece, at[wanted])
                collector.keep(genomic[wanted], rows[:, ::-1] if is_rc else rows)
    return _combine(forward.rows, reverse.rows)
