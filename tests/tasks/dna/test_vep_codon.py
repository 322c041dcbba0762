"""The codon score's look-ahead and the amino-acid score against brute force: the mutated
region run from scratch, and every triplet at a codon run from scratch."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from Bio.Seq import Seq

from gfssm import GFSSMForCausalLM
from gfssm.tasks.dna import Genome
from gfssm.tasks.dna.markov import MarkovModel
from gfssm.tasks.dna.objective import base_log_probs
from gfssm.tasks.dna.vep import read_genbank_cds
from gfssm.tasks.dna.vep.codon import (
    LANE_CODONS,
    markov_codon_scores,
    model_codon_scores,
    plan_lanes,
)
from gfssm.tasks.dna.vep.job import cds_regions
from gfssm.tasks.dna.vep.scores import region_streams

PHIX = "phiX174_NC_001422.gbk"
CONTIG = "NC_001422.1"
# bits; log-probabilities are taken and stored in float32 whatever the model runs in, so
# float64 is held to float32 rounding of values up to ~10 bits; a float32 model adds the
# rounding of a different summation order (fork and 4-position chunks vs one full pass)
TOLERANCE = {torch.float64: 1e-5, torch.float32: 2e-4}


@pytest.fixture
def phix_setup(tmp_path, data_dir):
    path = tmp_path / PHIX
    shutil.copy(data_dir / PHIX, path)
    genome = Genome(path, cache_dir=tmp_path / "cache")
    return genome, read_genbank_cds(path).cds


def streamed(genome, cds):
    regions = cds_regions(cds, genome.lengths[CONTIG], 64)
    return cds, regions, region_streams(genome, CONTIG, regions)


def _cases(cds, regions, streams, rng, n):
    """Random codons whose bases are adjacent (a CDS join gives no codon score): (cds,
    codon, base of the codon in reading order, + strand alt shift, strand, that strand's
    stream tokens, the codon's indices in them)."""
    starts = np.array([a for a, _ in regions])
    for _ in range(n):
        k = int(rng.integers(len(cds)))
        codons = cds[k].positions().reshape(-1, 3)
        codon = codons[int(rng.integers(len(codons)))]
        i, shift, strand = int(rng.integers(3)), int(rng.integers(1, 4)), int(rng.integers(2))
        r = int(np.searchsorted(starts, codon.min(), side="right") - 1)
        first, end = regions[r]
        index = codon - first if strand == 0 else end - 1 - codon
        if (np.sort(index) == index.min() + np.arange(3)).all():
            yield k, codon, i, shift, strand, streams[r][strand], index


def _brute_force(log2p_of, cds, regions, streams, rng, n=24):
    """(expected, coding index, + strand alt) per case: the later bases of the codon on the
    strand, their log2 P in the mutated stream minus in the reference stream."""
    for k, codon, i, shift, strand, tokens, index in _cases(cds, regions, streams, rng, n):
        q = int(index[i])
        alt = (tokens[q] + shift) % 4
        mutated = tokens.copy()
        mutated[q] = alt
        ref_rows, alt_rows = log2p_of(tokens), log2p_of(mutated)
        later = [p for p in range(index.min(), index.min() + 3) if p > q]
        expected = sum(alt_rows[p - 1, tokens[p]] - ref_rows[p - 1, tokens[p]] for p in later)
        coding = int(np.flatnonzero(cds[k].positions() == codon[i])[0])
        plus_alt = alt if strand == 0 else 3 - alt
        yield expected, k, strand, coding, plus_alt


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_model_look_ahead_equals_running_each_mutated_region(phix_setup, tiny_config, dtype):
    # phiX's four shortest genes: separate regions, codons in several lanes (float64 on a
    # CPU is slow, and the whole genome adds nothing the lane test does not cover)
    genome, every = phix_setup
    cds, regions, streams = streamed(genome, sorted(every, key=lambda c: c.positions().size)[:4])
    assert len(regions) > 1 and max(c.positions().size for c in cds) > 3 * LANE_CODONS
    torch.manual_seed(1)
    model = GFSSMForCausalLM(tiny_config).to(dtype).eval()
    # twice the init's weights: look-aheads of up to ~1.3 bits (at 4x predictions saturate
    # and a float32 difference of two saturated log-probabilities loses its digits)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)
    out = model_codon_scores(model, cds, regions, streams, piece_length=512).look_ahead

    def log2p_of(tokens):
        with torch.no_grad():
            logits = model(torch.from_numpy(tokens)[None])
        return base_log_probs(logits)[0].double().numpy() / np.log(2)

    checked = nonzero = 0
    for expected, k, strand, coding, alt in _brute_force(
        log2p_of, cds, regions, streams, np.random.default_rng(0)
    ):
        got = out[k][strand, coding, alt]
        assert abs(got - expected) <= TOLERANCE[dtype], (k, strand, coding, alt)
        checked += 1
        nonzero += abs(expected) > 1e-3
    assert checked >= 15 and nonzero >= 5


def test_markov_look_ahead_equals_scoring_each_mutated_region(phix_setup, lambda_text):
    cds, regions, streams = streamed(*phix_setup)
    from gfssm.tasks.dna.tokens import encode

    markov = MarkovModel(order=5).fit(encode(lambda_text)[0])
    out = markov_codon_scores(markov, cds, regions, streams).look_ahead

    def log2p_of(tokens):
        # row p predicts base p + 1, as the model's rows do
        return np.log2(markov.base_probs(tokens, np.arange(1, tokens.size)))

    checked = 0
    for expected, k, strand, coding, alt in _brute_force(
        log2p_of, cds, regions, streams, np.random.default_rng(1), n=40
    ):
        assert out[k][strand, coding, alt] == pytest.approx(expected, abs=TOLERANCE[torch.float64])
        checked += 1
    assert checked >= 25


def _translate(triplet: np.ndarray, coding_strand: bool, table: int) -> str:
    """The amino acid of a triplet as a strand reads it (reverse-complemented when that
    strand is not the CDS's)."""
    text = Seq("".join("ACGT"[b] for b in triplet))
    return str((text if coding_strand else text.reverse_complement()).translate(table=table))


def _amino_acid_brute_force(log2_triplets_of, cds, regions, streams, rng, n):
    """(expected, cds, strand, coding index, + strand alt) per case: on the strand, log2
    P(alt amino acid) - log2 P(ref amino acid), P(amino acid) the sum of the probabilities
    of its codons, each triplet scored from scratch at the codon (Biopython translates)."""
    for k, codon, i, shift, strand, tokens, index in _cases(cds, regions, streams, rng, n):
        q0 = int(index.min())
        triplets = np.stack(np.unravel_index(np.arange(64), (4, 4, 4)), 1)
        log2p = log2_triplets_of(tokens[:q0], triplets)  # (64,)
        coding_strand = (strand == 0) == (cds[k].strand > 0)
        letters = np.array([_translate(t, coding_strand, cds[k].table) for t in triplets])
        ref = tokens[q0 : q0 + 3].copy()
        alt = ref.copy()
        alt[int(index[i]) - q0] = (ref[int(index[i]) - q0] + shift) % 4
        ref_aa = _translate(ref, coding_strand, cds[k].table)
        alt_aa = _translate(alt, coding_strand, cds[k].table)
        expected = np.log2(np.exp2(log2p[letters == alt_aa]).sum()) - np.log2(
            np.exp2(log2p[letters == ref_aa]).sum()
        )
        coding = int(np.flatnonzero(cds[k].positions() == codon[i])[0])
        plus_alt = alt[int(index[i]) - q0] if strand == 0 else 3 - alt[int(index[i]) - q0]
        yield expected, k, strand, coding, int(plus_alt), ref_aa == alt_aa


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_model_amino_acid_score_equals_every_triplet_from_scratch(phix_setup, tiny_config, dtype):
    genome, every = phix_setup
    cds, regions, streams = streamed(genome, sorted(every, key=lambda c: c.positions().size)[:4])
    torch.manual_seed(2)
    model = GFSSMForCausalLM(tiny_config).to(dtype).eval()
    with torch.no_grad():  # sharper predictions, as in the look-ahead test
        for p in model.parameters():
            p.mul_(2.0)
    out = model_codon_scores(model, cds, regions, streams, piece_length=512).amino_acid

    def log2_triplets_of(prefix, triplets):
        ids = np.concatenate([np.broadcast_to(prefix, (64, prefix.size)), triplets], 1)
        with torch.no_grad():
            logits = model(torch.from_numpy(np.ascontiguousarray(ids)))
        rows = base_log_probs(logits)[:, prefix.size - 1 : -1].double().numpy() / np.log(2)
        return np.take_along_axis(rows, triplets[:, :, None], 2)[:, :, 0].sum(1)

    # float64 on a CPU is slow (64 sequences of the whole prefix per case): fewer cases
    n = 14 if dtype == torch.float64 else 40
    checked = synonymous = 0
    for expected, k, strand, coding, alt, same in _amino_acid_brute_force(
        log2_triplets_of, cds, regions, streams, np.random.default_rng(3), n=n
    ):
        got = out[k][strand, coding, alt]
        if same:  # the codons of one amino acid are summed together: exactly 0
            assert got == 0.0
            synonymous += 1
        else:
            assert abs(got - expected) <= TOLERANCE[dtype], (k, strand, coding, alt)
        checked += 1
    assert checked >= n * 3 // 5 and 0 < synonymous < checked


def test_markov_amino_acid_score_equals_every_triplet_from_scratch(phix_setup, lambda_text):
    cds, regions, streams = streamed(*phix_setup)
    from gfssm.tasks.dna.tokens import encode

    markov = MarkovModel(order=5).fit(encode(lambda_text)[0])
    out = markov_codon_scores(markov, cds, regions, streams).amino_acid

    def log2_triplets_of(prefix, triplets):
        # the baseline's context: at most `order` bases, none before the region
        context = prefix[-markov.order :]
        at = context.size + np.arange(3)
        rows = [np.log2(markov.base_probs(np.concatenate([context, t]), at)) for t in triplets]
        return np.array([r[np.arange(3), t].sum() for r, t in zip(rows, triplets)])

    checked = 0
    for expected, k, strand, coding, alt, same in _amino_acid_brute_force(
        log2_triplets_of, cds, regions, streams, np.random.default_rng(4), n=40
    ):
        got = out[k][strand, coding, alt]
        assert got == 0.0 if same else got == pytest.approx(expected, abs=1e-5)
        checked += 1
    assert checked >= 25


def test_lanes_cover_every_adjacent_codon_once_per_strand(phix_setup):
    cds, regions, streams = streamed(*phix_setup)
    lanes = plan_lanes(cds, regions, streams)
    assert max(len(lane.tokens) for lane in lanes) == LANE_CODONS
    for k, item in enumerate(cds):
        n_codons = item.positions().size // 3
        for strand in (0, 1):
            covered = np.concatenate(
                [lane.coding[:, 0] for lane in lanes if lane.cds == k and lane.strand == strand]
            )
            # every codon once, except those split by a join (phiX's origin-spanning gene A)
            assert np.unique(covered).size == covered.size
            assert n_codons - 1 <= covered.size <= n_codons
    # the strands read each codon in opposite orders
    first = next(lane for lane in lanes if lane.strand == 1 and cds[lane.cds].strand > 0)
    assert (np.diff(first.coding, axis=1) == -1).all()
