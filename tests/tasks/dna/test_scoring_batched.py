"""Batched scoring: the streams of several items as rows of one batch give each item the
scores of its own streams, checked against plain forward passes over each stream."""

import numpy as np
import pytest
import torch

from gfssm import GFSSMForCausalLM
from gfssm.tasks.dna import Genome
from gfssm.tasks.dna.regions import Interval
from gfssm.tasks.dna.scoring import (
    ScoringOptions,
    group_items,
    plan_scoring,
    score_work_item,
    score_work_items,
)
from gfssm.tasks.dna.tokens import N_BASES, reverse_complement

TOL = {"rtol": 1e-4, "atol": 1e-4}


@pytest.fixture
def model(tiny_config, seeded):
    lm = GFSSMForCausalLM(tiny_config).eval()
    with torch.no_grad():  # give the initial-token sink a part, as a trained model would
        for layer in lm.backbone.layers:
            layer.mixer.sink_gain.uniform_(0.2, 0.5)
    return lm


def one_pass(model, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log2 P of token t, entropy bits of its prediction) from one forward pass over the
    whole stream, NaN at t = 0 and at N."""
    with torch.no_grad():
        logits = model(torch.from_numpy(tokens)[None])[0, :, :N_BASES]
    logp = torch.log_softmax(logits.double(), -1).numpy() / np.log(2)
    lp = np.full(tokens.size, np.nan)
    ent = np.full(tokens.size, np.nan)
    picked = logp[np.arange(tokens.size - 1), np.minimum(tokens[1:], N_BASES - 1)]
    lp[1:] = np.where(tokens[1:] < N_BASES, picked, np.nan)
    ent[1:] = np.where(tokens[1:] < N_BASES, -(np.exp2(logp) * logp).sum(1)[:-1], np.nan)
    return lp, ent


def expected_scores(model, genome: Genome, item) -> tuple[np.ndarray, np.ndarray]:
    """An item's forward and reverse-complement streams, each in one pass, averaged."""
    fwd_tokens, _ = genome.tokens(item.contig, item.context_start, item.end)
    f_lp, f_ent = (a[item.start - item.context_start :] for a in one_pass(model, fwd_tokens))
    rc_tokens, _ = genome.tokens(item.contig, item.start, item.context_end)
    r_lp, r_ent = (a[::-1][: item.length] for a in one_pass(model, reverse_complement(rc_tokens)))

    def average(a, b):
        return np.where(np.isnan(a), b, np.where(np.isnan(b), a, (a + b) / 2))

    return average(f_lp, r_lp), average(f_ent, r_ent)


def test_batched_items_equal_their_own_streams(model, lambda_fasta, lambda_name):
    genome = Genome(lambda_fasta)
    # an odd-length region in segments of unequal length: rows end at different pieces
    region = [Interval(lambda_name, 101, 101 + 3 * 1000 + 457)]
    plan = plan_scoring(genome, region, segment_length=1000, warmup=150)
    assert [p.length for p in plan] == [1000, 1000, 1000, 457]
    batched = ScoringOptions(piece_length=333, reverse_complement=True, batch_streams=16)
    alone = ScoringOptions(piece_length=65536, reverse_complement=True, batch_streams=1)
    got = score_work_items(model, genome, plan, batched)
    for item, scores in zip(plan, got):
        assert scores.item == item
        lp, ent = expected_scores(model, genome, item)
        np.testing.assert_allclose(scores.log2_prob, lp, **TOL)
        np.testing.assert_allclose(scores.entropy_bits, ent, **TOL)
        assert np.isfinite(scores.log2_prob).all()
        tokens, _ = genome.tokens(item.contig, item.start, item.end)
        assert np.array_equal(scores.base, tokens.astype(np.uint8))
        # the one-stream path (one stream per call, one 64 kb piece) agrees to fp32 rounding
        single = score_work_item(model, genome, item, alone)
        np.testing.assert_allclose(scores.log2_prob, single.log2_prob, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(scores.entropy_bits, single.entropy_bits, rtol=1e-5, atol=1e-5)


def test_forward_only_batch_scores_the_first_base_uniform(model, lambda_fasta, lambda_name):
    genome = Genome(lambda_fasta)
    plan = plan_scoring(genome, [Interval(lambda_name, 0, 2501)], segment_length=900, warmup=64)
    got = score_work_items(model, genome, plan, ScoringOptions(piece_length=256))
    # the contig's first base has no context; later segments read their warm-up instead
    assert got[0].log2_prob[0] == -2.0 and got[0].entropy_bits[0] == 2.0
    for item, scores in zip(plan, got):
        tokens, _ = genome.tokens(item.contig, item.context_start, item.end)
        lp, ent = (a[item.start - item.context_start :] for a in one_pass(model, tokens))
        skip = 1 if item.context_start == item.start else 0
        np.testing.assert_allclose(scores.log2_prob[skip:], lp[skip:], **TOL)
        np.testing.assert_allclose(scores.entropy_bits[skip:], ent[skip:], **TOL)


def test_groups_fill_one_batch_and_bound_their_bases(lambda_fasta, lambda_name):
    genome = Genome(lambda_fasta)
    plan = plan_scoring(genome, [Interval(lambda_name, 0, 10_000)], segment_length=1000)
    both = ScoringOptions(reverse_complement=True, batch_streams=6)
    assert [len(g) for g in group_items(plan, both)] == [3, 3, 3, 1]  # 2 streams per item
    small = ScoringOptions(batch_streams=16, group_bases=2500)
    assert [len(g) for g in group_items(plan, small)] == [2, 2, 2, 2, 2]
    assert [i for g in group_items(plan, small) for i in g] == plan
    with pytest.raises(ValueError):
        ScoringOptions(batch_streams=0)
