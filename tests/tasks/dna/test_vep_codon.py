"""The codon score's look-ahead against brute force: the mutated region run from scratch."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from gfssm import GFSSMForCausalLM
from gfssm.tasks.dna import Genome
from gfssm.tasks.dna.markov import MarkovModel
from gfssm.tasks.dna.objective import base_log_probs
from gfssm.tasks.dna.vep import read_genbank_cds
from gfssm.tasks.dna.vep.codon import (
    LANE_CODONS,
    markov_look_ahead,
    model_look_ahead,
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


def _cases(cds, regions, rng, n):
    """Random (cds, codon, base of the codon in reading order, + strand alt, strand)."""
    for _ in range(n):
        k = int(rng.integers(len(cds)))
        codons = cds[k].positions().reshape(-1, 3)
        yield (
            k,
            codons[int(rng.integers(len(codons)))],
            int(rng.integers(3)),
            int(rng.integers(1, 4)),
            int(rng.integers(2)),
        )


def _brute_force(log2p_of, cds, regions, streams, rng, n=24):
    """(expected, coding index, + strand alt) per case: the later bases of the codon on the
    strand, their log2 P in the mutated stream minus in the reference stream."""
    starts = np.array([a for a, _ in regions])
    for k, codon, i, shift, strand in _cases(cds, regions, rng, n):
        r = int(np.searchsorted(starts, codon.min(), side="right") - 1)
        first, end = regions[r]
        tokens = streams[r][strand]
        index = codon - first if strand == 0 else end - 1 - codon
        if not (np.sort(index) == index.min() + np.arange(3)).all():
            continue  # not adjacent on the contig: no codon score
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
    out = model_look_ahead(model, cds, regions, streams, piece_length=512)

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
    out = markov_look_ahead(markov, cds, regions, streams)

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
