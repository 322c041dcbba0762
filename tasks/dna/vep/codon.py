"""The codon score: what a change does to the likelihood of its whole codon.

The position score (:mod:`gfssm.tasks.dna.vep.scores`) compares the changed base with the
reference at its own position only. A next-base model also sees a change through the bases
that follow it: on a strand that reads a codon ``u0 u1 u2``, a change of ``u0`` changes
the predictions of ``u1`` and ``u2``. The codon score adds, on each strand, this look-ahead
over the rest of the codon,

    sum over the codon's later bases j of  log2 P(u_j | ..., alt, ...) - log2 P(u_j | ..., ref, ...)

to the position score (each strand's ``log2 P(codon with alt) - log2 P(codon)``, averaged
over the strands), so that a change is judged with the codon it makes, as a model of
the genome would judge the mutated sequence.

Each codon of each CDS is visited on both strands, in the order that strand reads it:
*lanes* are runs of consecutive codons of one CDS on one strand; a lane starts from the
streaming state at its first codon (one pass over the region, as the position score makes)
and moves codon by codon, and at every codon :meth:`GFSSMForCausalLM.fork` evaluates the
reference and the six changes of its first two bases from that state without copying it.
The Markov baseline gets the same look-ahead from its counts. A codon whose bases are not
adjacent on the contig (a CDS join inside it) has no codon score (NaN).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from gfssm import GFSSMForCausalLM
from gfssm.cache import GFSSMCache
from gfssm.tasks.dna.markov import MarkovModel
from gfssm.tasks.dna.objective import base_log_probs
from gfssm.tasks.dna.tokens import N_BASES
from gfssm.tasks.dna.tokens import N as N_TOKEN
from gfssm.tasks.dna.vep.cds import Cds
from gfssm.tasks.dna.vep.scores import LOG2E, Streams

LANE_CODONS = 64  # codons a lane runs before a fresh start (bounds padding in a batch)
LANES_PER_BATCH = 256
SHIFTS = np.arange(1, N_BASES)  # alternative k of base u is (u + k) % 4, as in effects.py


@dataclass
class Lane:
    """Consecutive codons of one CDS on one strand of one region, in that strand's order:
    ``tokens`` (n, 3) stream tokens; ``coding`` (n, 3) their indices among the CDS's
    coding bases; ``start`` the stream index of the first base."""

    cds: int
    strand: int  # 0: the region's + strand, 1: its reverse complement
    region: int
    start: int
    tokens: np.ndarray
    coding: np.ndarray


def plan_lanes(cds: list[Cds], regions: list[tuple[int, int]], streams: Streams) -> list[Lane]:
    """The lanes of every CDS (each inside one of ``regions``; ``streams[r]`` holds region
    r's + strand and reverse-complement tokens)."""
    starts = np.array([a for a, _ in regions])
    lanes = []
    for number, item in enumerate(cds):
        positions = item.positions()
        whole = positions.size // 3 * 3
        genomic = positions[:whole].reshape(-1, 3)
        coding = np.arange(whole).reshape(-1, 3)
        r = int(np.searchsorted(starts, genomic.min(), side="right") - 1)
        first, end = regions[r]
        for strand in (0, 1):
            index = genomic - first if strand == 0 else end - 1 - genomic
            order = np.argsort(index, axis=1)
            index = np.take_along_axis(index, order, 1)
            codon_coding = np.take_along_axis(coding, order, 1)
            adjacent = (index[:, 1] == index[:, 0] + 1) & (index[:, 2] == index[:, 0] + 2)
            index, codon_coding = index[adjacent], codon_coding[adjacent]
            by_start = np.argsort(index[:, 0])
            index, codon_coding = index[by_start], codon_coding[by_start]
            breaks = np.flatnonzero(np.diff(index[:, 0]) != 3) + 1
            for run, run_coding in zip(np.split(index, breaks), np.split(codon_coding, breaks)):
                for a in range(0, len(run), LANE_CODONS):
                    piece = run[a : a + LANE_CODONS]
                    tokens = streams[r][strand][piece]
                    lanes.append(
                        Lane(
                            number,
                            strand,
                            r,
                            int(piece[0, 0]),
                            tokens,
                            run_coding[a : a + LANE_CODONS],
                        )
                    )
    return lanes


def _branches(codons: np.ndarray) -> np.ndarray:
    """(n, 3) codons -> (n, 7, 2) first two bases: the reference, then the three changes
    of base 0, then the three of base 1."""
    u0, u1 = codons[:, :1], codons[:, 1:2]
    alt0, alt1 = (u0 + SHIFTS) % N_BASES, (u1 + SHIFTS) % N_BASES
    ref = np.stack([u0[:, 0], u1[:, 0]], 1)[:, None]
    first = np.stack([alt0, np.broadcast_to(u1, alt0.shape)], 2)
    second = np.stack([np.broadcast_to(u0, alt1.shape), alt1], 2)
    return np.concatenate([ref, first, second], 1)


def _look_ahead(log2p: np.ndarray, codons: np.ndarray) -> np.ndarray:
    """log2p (n, 7, 2, 4): the predictions of bases 1 and 2 in each branch of
    :func:`_branches` -> (n, 3, 3) look-ahead of the changes of each base of the codon."""
    n = codons.shape[0]
    rows = np.arange(n)[:, None]
    u1, u2 = codons[:, 1:2], codons[:, 2:3]
    next1 = log2p[rows, np.arange(7)[None], 0, u1]  # (n, 7): log2 P(u1) in each branch
    next2 = log2p[rows, np.arange(7)[None], 1, u2]
    first = (next1[:, 1:4] - next1[:, :1]) + (next2[:, 1:4] - next2[:, :1])
    second = next2[:, 4:7] - next2[:, :1]
    return np.stack([first, second, np.zeros_like(second)], 1)  # base 2: nothing later


def _scatter(out: dict[int, np.ndarray], lane: Lane, ahead: np.ndarray) -> None:
    """Store a lane's look-ahead (n, 3, 3) at its coding bases, columns the + strand's
    alternative base."""
    for i in range(3):
        alt = (lane.tokens[:, i : i + 1] + SHIFTS) % N_BASES
        plus_alt = alt if lane.strand == 0 else 3 - alt
        rows = np.broadcast_to(lane.coding[:, i : i + 1], alt.shape)
        out[lane.cds][lane.strand, rows, plus_alt] = ahead[:, i]


def _with_snapshots(
    model: GFSSMForCausalLM, lanes: list[Lane], streams, piece_length: int
) -> Iterator[tuple[Lane, GFSSMCache]]:
    """Each lane with the streaming state at its first base, one pass per region strand."""
    device = next(model.parameters()).device
    by_stream: dict[tuple[int, int], list[Lane]] = {}
    for lane in lanes:
        by_stream.setdefault((lane.region, lane.strand), []).append(lane)
    for (region, strand), group in by_stream.items():
        tokens = streams[region][strand]
        cache, pos = model.allocate_cache(1, device=device), 0
        for lane in sorted(group, key=lambda item: item.start):
            for a in range(pos, lane.start, piece_length):
                piece = tokens[a : min(lane.start, a + piece_length)]
                model(torch.from_numpy(piece).to(device)[None], cache=cache)
            pos = lane.start
            yield lane, cache.select(torch.zeros(1, dtype=torch.long, device=device))


@torch.inference_mode()
def model_look_ahead(
    model: GFSSMForCausalLM,
    cds: list[Cds],
    regions: list[tuple[int, int]],
    streams: Streams,
    piece_length: int = 65536,
) -> dict[int, np.ndarray]:
    """Per CDS: (2, n_coding, 4) look-ahead in bits of every change (column: the + strand
    base), on the + strand (0) and the reverse strand (1); NaN where not computed."""
    out = {
        i: np.full((2, c.positions().size, N_BASES), np.nan, np.float32) for i, c in enumerate(cds)
    }
    lanes = plan_lanes(cds, regions, streams)
    device = next(model.parameters()).device
    # every lane's state at once (a work item's CDS: a few hundred lanes of ~0.4 MB for
    # the ecoli15 model), then batches of equal size, longest lanes together, so that no
    # batch is a small remainder that pays for 64 steps
    snapshots = sorted(
        _with_snapshots(model, lanes, streams, piece_length), key=lambda item: -len(item[0].tokens)
    )
    size = -(-len(snapshots) // max(1, -(-len(snapshots) // LANES_PER_BATCH)))
    for a in range(0, len(snapshots), size):
        _run_batch(model, snapshots[a : a + size], out, device)
    return out


def _run_batch(
    model: GFSSMForCausalLM,
    batch: list[tuple[Lane, GFSSMCache]],
    out: dict[int, np.ndarray],
    device: torch.device,
) -> None:
    """Run lanes side by side, codon by codon: fork the seven branches of each lane's
    codon from its state, then move the state over the codon."""
    lanes = [lane for lane, _ in batch]
    cache = GFSSMCache.cat([c for _, c in batch])
    longest = max(len(lane.tokens) for lane in lanes)
    codons = np.zeros((len(lanes), longest, 3), np.int64)
    for i, lane in enumerate(lanes):
        codons[i, : len(lane.tokens)] = lane.tokens
    ahead = np.empty((len(lanes), longest, 3, 3), np.float32)
    for t in range(longest):
        ids = torch.from_numpy(_branches(codons[:, t])).to(device)
        log2p = base_log_probs(model.fork(ids, cache).flatten(1, 2)) * LOG2E
        ahead[:, t] = _look_ahead(
            log2p.reshape(len(lanes), 7, 2, N_BASES).cpu().numpy(), codons[:, t]
        )
        model(torch.from_numpy(codons[:, t]).to(device), cache=cache)
    for i, lane in enumerate(lanes):
        _scatter(out, lane, ahead[i, : len(lane.tokens)])


def markov_look_ahead(
    markov: MarkovModel,
    cds: list[Cds],
    regions: list[tuple[int, int]],
    streams: Streams,
) -> dict[int, np.ndarray]:
    """:func:`model_look_ahead` for the Markov baseline (context: at most ``order`` bases
    of the same stream, none before the region's start)."""
    out = {
        i: np.full((2, c.positions().size, N_BASES), np.nan, np.float32) for i, c in enumerate(cds)
    }
    k = markov.order
    for lane in plan_lanes(cds, regions, streams):
        tokens = streams[lane.region][lane.strand]
        n = len(lane.tokens)
        first = lane.start + 3 * np.arange(n)  # stream index of each codon's base 0
        back = first[:, None] + np.arange(-k, 0)[None]  # (n, k) context
        context = np.where(back >= 0, tokens[np.maximum(back, 0)], N_TOKEN)
        branches = _branches(lane.tokens)  # (n, 7, 2)
        windows = np.concatenate(
            [
                np.full((n, 7, 1), N_TOKEN),  # a break: no context crosses windows
                np.broadcast_to(context[:, None], (n, 7, k)),
                branches,
                np.broadcast_to(lane.tokens[:, None, 2:3], (n, 7, 1)),
            ],
            2,
        )
        width = windows.shape[2]
        at = np.arange(n * 7)[:, None] * width + np.array([k + 2, k + 3])[None]
        probs = markov.base_probs(windows.reshape(-1), at.reshape(-1))
        ahead = _look_ahead(np.log2(probs).reshape(n, 7, 2, N_BASES), lane.tokens)
        _scatter(out, lane, ahead)
    return out
