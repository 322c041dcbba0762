"""Score work items: a pure function of (model, genome, items, options).

Each item is read by one forward stream (and one reverse-complement stream) in pieces of
``piece_length`` bases; the model's streaming cache carries the state from piece to piece,
so every base is scored with all the context the item reads, in memory that does not grow
with the contig. The streams of several items run as the rows of one batch
(:mod:`gfssm.tasks.dna.scoring.batch`; :func:`group_items` picks them); a row sees only
its own stream and the piece length per row is fixed, so an item gets the scores it gets
alone: the same to float rounding, and bit for bit on the CPU reference kernels, which is
why a Ray worker scoring one item per call writes the same outputs as ``score_genome``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from gfssm.tasks.dna.genome import Genome
from gfssm.tasks.dna.scoring.batch import Stream, run_streams
from gfssm.tasks.dna.scoring.plan import WorkItem
from gfssm.tasks.dna.tokens import N_BASES, reverse_complement

#: the score of a base no stream has context for (a contig's first base, forward only):
#: the uniform prediction, log2(1/4) and 2 bits of entropy. The models are trained on plain
#: base windows without a ``<bos>`` token (see ``windows.make_batch``), so they have no
#: trained prediction from an empty context; the uniform one is what a model that knows
#: nothing predicts, and what a sequence compressor charges for its first symbol.
NO_CONTEXT_LOG2_PROB = -2.0
NO_CONTEXT_ENTROPY_BITS = 2.0


@dataclass(frozen=True)
class ScoringOptions:
    """piece_length: bases per stream per model call, whatever the batch (so an item's
    scores do not depend on its batch); a call reads ``rows * piece_length`` tokens, and the
    scan's intermediates grow with them: past some 16k tokens they fall out of the CPU
    caches; reverse_complement: also score the reverse strand and average per base;
    batch_streams: at most this many streams (an item has one per strand) run as rows of
    one batch; group_bases: a group of items batched together holds at most this many
    bases (unless one item alone is longer), which bounds a group's memory. For plans of
    many segments, ``piece_length=4096, batch_streams=4`` is faster still on CPUs."""

    piece_length: int = 8192
    reverse_complement: bool = False
    batch_streams: int = 2
    group_bases: int = 1 << 24

    def __post_init__(self) -> None:
        if self.piece_length < 1 or self.batch_streams < 1 or self.group_bases < 1:
            raise ValueError(f"{self}: piece_length, batch_streams and group_bases must be >= 1")


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


def _forward_stream(genome: Genome, item: WorkItem, scores: SegmentScores) -> Stream:
    """Stream position ``s`` is genomic base ``context_start + s``."""
    contig, first = item.contig, item.context_start
    return Stream(
        tokens=lambda a, b: genome.tokens(contig, first + a, first + b)[0],
        length=item.end - first,
        log2_prob=scores.log2_prob,
        entropy_bits=scores.entropy_bits,
        offset=first - item.start,
        step=1,
        base=scores.base,
    )


def _reverse_stream(genome: Genome, item: WorkItem, log2_prob, entropy_bits) -> Stream:
    """Stream position ``s`` of the reverse strand is genomic base ``context_end - 1 - s``."""
    contig, top = item.contig, item.context_end
    return Stream(
        tokens=lambda a, b: reverse_complement(genome.tokens(contig, top - b, top - a)[0]),
        length=top - item.start,
        log2_prob=log2_prob,
        entropy_bits=entropy_bits,
        offset=top - 1 - item.start,
        step=-1,
    )


@torch.inference_mode()
def score_work_items(
    model: nn.Module,
    genome: Genome,
    items: list[WorkItem],
    options: ScoringOptions | None = None,
    *,
    outs: list[SegmentScores | None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[SegmentScores]:
    """Scores of every base of each of ``items`` (into ``outs[i]`` where given, e.g.
    memory-mapped arrays), their streams batched ``options.batch_streams`` at a time.

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
    outs = outs or [None] * len(items)
    scores = [out if out is not None else SegmentScores.empty(i) for i, out in zip(items, outs)]
    streams: list[Stream] = []
    reverse: list[tuple[np.ndarray, np.ndarray]] = []
    for item, s in zip(items, scores):
        streams.append(_forward_stream(genome, item, s))
        if options.reverse_complement:
            # its own arrays: the strands of an item may run in the same batch
            rc = (
                np.full(item.length, np.nan, np.float32),
                np.full(item.length, np.nan, np.float32),
            )
            reverse.append(rc)
            streams.append(_reverse_stream(genome, item, *rc))
    try:
        for at in range(0, len(streams), options.batch_streams):
            batch = streams[at : at + options.batch_streams]
            run_streams(model, batch, options.piece_length, device, progress)
        for k, s in enumerate(scores):
            if options.reverse_complement:
                rc_lp, rc_ent = reverse[k]
                s.log2_prob[:] = _average(s.log2_prob, rc_lp)
                s.entropy_bits[:] = _average(s.entropy_bits, rc_ent)
            if s.item.length and s.base[0] < N_BASES and not np.isfinite(s.log2_prob[0]):
                # no pass had context for the item's first base (it starts its forward stream)
                s.log2_prob[0] = NO_CONTEXT_LOG2_PROB
                s.entropy_bits[0] = NO_CONTEXT_ENTROPY_BITS
    finally:
        model.train(was_training)
    return scores


def group_items(items: list[WorkItem], options: ScoringOptions) -> list[list[WorkItem]]:
    """Consecutive items whose streams fill one batch (``batch_streams`` rows, one per
    strand) and hold at most ``group_bases`` bases; a pure function of the plan, so the
    single-process path and the Ray workers batch the same items together."""
    per_group = max(1, options.batch_streams // (2 if options.reverse_complement else 1))
    groups: list[list[WorkItem]] = []
    bases = 0
    for item in items:
        size = item.context_end - item.context_start
        if groups and len(groups[-1]) < per_group and bases + size <= options.group_bases:
            groups[-1].append(item)
            bases += size
        else:
            groups.append([item])
            bases = size
    return groups


def score_work_item(
    model: nn.Module,
    genome: Genome,
    item: WorkItem,
    options: ScoringOptions | None = None,
    *,
    out: SegmentScores | None = None,
    progress: Callable[[int], None] | None = None,
) -> SegmentScores:
    """Scores of every base of ``item``, as :func:`score_work_items` of one item (its two
    strands, with ``reverse_complement``, run as two rows of one batch)."""
    return score_work_items(model, genome, [item], options, outs=[out], progress=progress)[0]


def _average(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-element mean of two passes; where one is NaN the other is kept."""
    both = np.isfinite(a) & np.isfinite(b)
    return np.where(both, 0.5 * (a + b), np.where(np.isfinite(a), a, b)).astype(np.float32)
