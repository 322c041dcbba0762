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
and moves codon by codon, and at every codon :meth:`GFSSMForCausalLM.fork` evaluates all
sixteen pairs of first two bases (the reference's and its six single changes among them)
from that state without copying it.
The Markov baseline gets the same look-ahead from its counts. A codon whose bases are not
adjacent on the contig (a CDS join inside it) has no codon score (NaN).

The same fork gives the *amino-acid score*. At each codon the sixteen branches are every
pair of first two bases, so that with the prediction of the first base they make the
strand's probability of all 64 triplets; summed over the codons of each amino acid (the
CDS's genetic code, the triplet read as its reverse complement on the non-coding strand)
they make ``P(amino acid)``, and a change scores ``log2 P(alt amino acid) - log2 P(ref
amino acid)``, averaged over the strands. It asks whether the model expects the protein's
residue rather than its base: a synonymous change scores exactly 0 (the codons it swaps
are summed together), so against synonymous changes its AUROC is the fraction of damaging
changes to a residue the model finds less likely than the reference's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch

from gfssm import GFSSMForCausalLM
from gfssm.cache import GFSSMCache
from gfssm.tasks.dna.markov import MarkovModel
from gfssm.tasks.dna.objective import base_log_probs
from gfssm.tasks.dna.tokens import N_BASES
from gfssm.tasks.dna.tokens import N as N_TOKEN
from gfssm.tasks.dna.vep.cds import Cds
from gfssm.tasks.dna.vep.effects import amino_acids
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


@dataclass
class CodonScores:
    """Per CDS, (2, n_coding, 4) in bits for every change (column: the + strand base), on
    the + strand (0) and the reverse strand (1), NaN where not computed: ``look_ahead``
    (the codon score minus the position score) and ``amino_acid`` (the amino-acid score)."""

    look_ahead: dict[int, np.ndarray]
    amino_acid: dict[int, np.ndarray]

    @classmethod
    def empty(cls, cds: list[Cds]) -> CodonScores:
        def nan() -> dict[int, np.ndarray]:
            return {
                i: np.full((2, c.positions().size, N_BASES), np.nan, np.float32)
                for i, c in enumerate(cds)
            }

        return cls(nan(), nan())


# branch 4 * b0 + b1 of every fork reads the bases b0, b1 (in the strand's order)
BRANCHES = np.stack(np.divmod(np.arange(N_BASES * N_BASES), N_BASES), 1)
WEIGHTS = np.array([16, 4, 1])  # triplet index of bases (b0, b1, b2)


def _triplets(first: np.ndarray, log2p: np.ndarray) -> tuple[np.ndarray, ...]:
    """first (n, 4): log2 P of the codon's first base; log2p (n, 16, 2, 4): the predictions
    after b0 and after b0 b1 in branch 4 * b0 + b1 -> log2 P(b0 b1 b2), log2 P(b1 b2 | b0)
    and log2 P(b2 | b0 b1), each (n, 64) by triplet index 16 b0 + 4 b1 + b2."""
    n = first.shape[0]
    after_first = log2p[:, :, 0].reshape(n, N_BASES, N_BASES, N_BASES)
    second = np.diagonal(after_first, axis1=2, axis2=3)  # (n, b0, b1): log2 P(b1 | b0)
    third = log2p[:, :, 1].reshape(n, N_BASES, N_BASES, N_BASES)  # log2 P(b2 | b0 b1)
    rest = second[..., None] + third
    full = first[:, :, None, None] + rest
    return full.reshape(n, -1), rest.reshape(n, -1), third.reshape(n, -1)


def _changed(codons: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3) codons -> their triplet index (n,) and that of each change (n, 3, 3): base i
    of the codon replaced by (u_i + k) % 4 for k = 1, 2, 3."""
    ref = codons @ WEIGHTS
    alt = (codons[:, :, None] + SHIFTS) % N_BASES  # (n, 3, 3)
    return ref, ref[:, None, None] + (alt - codons[:, :, None]) * WEIGHTS[:, None]


@cache
def _amino_acid_groups(table: int, coding_strand: bool) -> np.ndarray:
    """(64,) the amino acid (an index, stop included) of each triplet as a strand reads
    it: the codon itself on the CDS's strand, its reverse complement on the other."""
    letters = amino_acids(table)
    if not coding_strand:  # read b0 b1 b2: the codon is (3 - b2)(3 - b1)(3 - b0)
        b = np.stack(np.unravel_index(np.arange(64), (N_BASES,) * 3), 1)
        letters = letters[(3 - b[:, ::-1]) @ WEIGHTS]
    return np.unique(letters, return_inverse=True)[1]


def _lane_scores(
    first: np.ndarray, log2p: np.ndarray, codons: np.ndarray, groups: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One lane's codons (n, 3), the prediction of each first base (n, 4) and the fork's
    (n, 16, 2, 4) -> the look-ahead and the amino-acid score (n, 3, 3) of each change."""
    full, rest, third = _triplets(first.astype(np.float64), log2p.astype(np.float64))
    ref, alt = _changed(codons)
    rows = np.arange(len(codons))
    ahead = np.zeros(alt.shape)
    # base 0: the predictions of b1 b2 after it; base 1: that of b2; base 2: nothing later
    ahead[:, 0] = rest[rows[:, None], alt[:, 0]] - rest[rows, ref][:, None]
    ahead[:, 1] = third[rows[:, None], alt[:, 1]] - third[rows, ref][:, None]
    # P(amino acid): the triplets of each summed; the same sum for both codons of a
    # synonymous change, so that its score is exactly 0
    one_hot = np.eye(groups.max() + 1)[groups]  # (64, n_amino_acids)
    per_group = np.log2(np.exp2(full) @ one_hot)[:, groups]  # (n, 64)
    amino = per_group[rows[:, None, None], alt] - per_group[rows, ref][:, None, None]
    return ahead.astype(np.float32), amino.astype(np.float32)


def _scatter(out: CodonScores, lane: Lane, ahead: np.ndarray, amino: np.ndarray) -> None:
    """Store a lane's scores (n, 3, 3) at its coding bases, columns the + strand's
    alternative base."""
    for i in range(3):
        alt = (lane.tokens[:, i : i + 1] + SHIFTS) % N_BASES
        plus_alt = alt if lane.strand == 0 else 3 - alt
        rows = np.broadcast_to(lane.coding[:, i : i + 1], alt.shape)
        out.look_ahead[lane.cds][lane.strand, rows, plus_alt] = ahead[:, i]
        out.amino_acid[lane.cds][lane.strand, rows, plus_alt] = amino[:, i]


def _groups(cds: list[Cds], lane: Lane) -> np.ndarray:
    item = cds[lane.cds]
    return _amino_acid_groups(item.table, (lane.strand == 0) == (item.strand > 0))


def _with_snapshots(
    model: GFSSMForCausalLM, lanes: list[Lane], streams, piece_length: int
) -> Iterator[tuple[Lane, GFSSMCache, np.ndarray]]:
    """Each lane with the streaming state at its first base and the log2 prediction of
    that base (4,) (NaN at a stream's first base), one pass per region strand."""
    device = next(model.parameters()).device
    by_stream: dict[tuple[int, int], list[Lane]] = {}
    for lane in lanes:
        by_stream.setdefault((lane.region, lane.strand), []).append(lane)
    for (region, strand), group in by_stream.items():
        tokens = streams[region][strand]
        cache, pos = model.allocate_cache(1, device=device), 0
        last = np.full(N_BASES, np.nan, np.float32)
        for lane in sorted(group, key=lambda item: item.start):
            for a in range(pos, lane.start, piece_length):
                piece = tokens[a : min(lane.start, a + piece_length)]
                logits = model(torch.from_numpy(piece).to(device)[None], cache=cache)
                last = (base_log_probs(logits[:, -1:])[0, 0] * LOG2E).cpu().numpy()
            pos = lane.start
            yield lane, cache.select(torch.zeros(1, dtype=torch.long, device=device)), last


@torch.inference_mode()
def model_codon_scores(
    model: GFSSMForCausalLM,
    cds: list[Cds],
    regions: list[tuple[int, int]],
    streams: Streams,
    piece_length: int = 65536,
) -> CodonScores:
    """The model's look-ahead and amino-acid score of every change of ``cds`` (each inside
    one of ``regions``, whose tokens are ``streams``)."""
    out = CodonScores.empty(cds)
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
        _run_batch(model, cds, snapshots[a : a + size], out, device)
    return out


def _run_batch(
    model: GFSSMForCausalLM,
    cds: list[Cds],
    batch: list[tuple[Lane, GFSSMCache, np.ndarray]],
    out: CodonScores,
    device: torch.device,
) -> None:
    """Run lanes side by side, codon by codon: fork the sixteen branches of each lane's
    codon from its state, then move the state over the codon."""
    lanes = [lane for lane, _, _ in batch]
    cache = GFSSMCache.cat([c for _, c, _ in batch])
    first = np.stack([f for _, _, f in batch])  # (lanes, 4) the next base's prediction
    longest = max(len(lane.tokens) for lane in lanes)
    codons = np.zeros((len(lanes), longest, 3), np.int64)
    for i, lane in enumerate(lanes):
        codons[i, : len(lane.tokens)] = lane.tokens
    log2p = np.empty((len(lanes), longest, len(BRANCHES), 2, N_BASES), np.float32)
    firsts = np.empty((len(lanes), longest, N_BASES), np.float32)
    ids = torch.from_numpy(BRANCHES).to(device).expand(len(lanes), -1, -1)
    for t in range(longest):
        firsts[:, t] = first
        logits = model.fork(ids, cache).flatten(1, 2)
        log2p[:, t] = (base_log_probs(logits) * LOG2E).reshape(log2p.shape[0], -1, 2, N_BASES)
        moved = model(torch.from_numpy(codons[:, t]).to(device), cache=cache)
        first = (base_log_probs(moved[:, -1:])[:, 0] * LOG2E).cpu().numpy()
    for i, lane in enumerate(lanes):
        n = len(lane.tokens)
        ahead, amino = _lane_scores(firsts[i, :n], log2p[i, :n], lane.tokens, _groups(cds, lane))
        _scatter(out, lane, ahead, amino)


def markov_codon_scores(
    markov: MarkovModel,
    cds: list[Cds],
    regions: list[tuple[int, int]],
    streams: Streams,
) -> CodonScores:
    """:func:`model_codon_scores` for the Markov baseline (context: at most ``order``
    bases of the same stream, none before the region's start)."""
    out = CodonScores.empty(cds)
    k = markov.order
    branches = len(BRANCHES)
    for lane in plan_lanes(cds, regions, streams):
        tokens = streams[lane.region][lane.strand]
        n = len(lane.tokens)
        first = lane.start + 3 * np.arange(n)  # stream index of each codon's base 0
        back = first[:, None] + np.arange(-k, 0)[None]  # (n, k) context
        context = np.where(back >= 0, tokens[np.maximum(back, 0)], N_TOKEN)
        windows = np.concatenate(
            [
                np.full((n, branches, 1), N_TOKEN),  # a break: no context crosses windows
                np.broadcast_to(context[:, None], (n, branches, k)),
                np.broadcast_to(BRANCHES, (n, branches, 2)),
                np.broadcast_to(lane.tokens[:, None, 2:3], (n, branches, 1)),
            ],
            2,
        )
        width = windows.shape[2]
        # the predictions of b0 (the same in every branch), b1 and b2
        at = np.arange(n * branches)[:, None] * width + np.array([k + 1, k + 2, k + 3])[None]
        log2p = np.log2(markov.base_probs(windows.reshape(-1), at.reshape(-1)))
        log2p = log2p.reshape(n, branches, 3, N_BASES)
        ahead, amino = _lane_scores(
            log2p[:, 0, 0], log2p[:, :, 1:], lane.tokens, _groups(cds, lane)
        )
        _scatter(out, lane, ahead, amino)
    return out
