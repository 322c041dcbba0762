"""Whole-genome scoring: streaming equals one forward pass, segments, reverse complement,
shards, resume and outputs."""

import gzip

import numpy as np
import pyarrow.parquet as pq
import pysam
import pytest
import torch

from gfssm import GFSSMForCausalLM
from gfssm.tasks.dna import Genome
from gfssm.tasks.dna.regions import Interval
from gfssm.tasks.dna.scoring import (
    ScoringOptions,
    ShardStore,
    merge_shards,
    plan_scoring,
    score_genome,
    score_work_item,
)
from gfssm.tasks.dna.tokens import reverse_complement


@pytest.fixture
def model(tiny_config, seeded):
    lm = GFSSMForCausalLM(tiny_config).eval()
    with torch.no_grad():  # give the initial-token sink a part, as a trained model would
        for layer in lm.backbone.layers:
            layer.mixer.sink_gain.uniform_(0.2, 0.5)
    return lm


def direct_log2_probs(model, tokens: np.ndarray) -> np.ndarray:
    """log2 P(base t | bases < t) from one forward pass over the whole stretch; NaN at 0."""
    with torch.no_grad():
        logits = model(torch.from_numpy(tokens)[None])[0, :, :4]
    logp = torch.log_softmax(logits.double(), -1).numpy() / np.log(2)
    out = np.full(tokens.size, np.nan)
    out[1:] = logp[np.arange(tokens.size - 1), tokens[1:]]
    return out


def test_streamed_pieces_equal_one_forward_pass(model, lambda_fasta, lambda_name):
    genome = Genome(lambda_fasta)
    region = Interval(lambda_name, 1000, 4000)
    (item,) = plan_scoring(genome, [region])
    scores = score_work_item(model, genome, item, ScoringOptions(piece_length=700))
    tokens, _ = genome.tokens(lambda_name, 1000, 4000)
    expected = direct_log2_probs(model, tokens)
    assert np.isnan(scores.log2_prob[0])  # the region's first base has no context
    np.testing.assert_allclose(scores.log2_prob[1:], expected[1:], rtol=1e-4, atol=1e-4)
    assert np.array_equal(scores.base, tokens.astype(np.uint8))
    assert np.all((scores.entropy_bits[1:] > 0) & (scores.entropy_bits[1:] <= 2.0 + 1e-6))


def test_reverse_complement_pass_is_averaged_per_base(model, lambda_fasta, lambda_name):
    genome = Genome(lambda_fasta)
    (item,) = plan_scoring(genome, [Interval(lambda_name, 2000, 3500)])
    both = score_work_item(model, genome, item, ScoringOptions(500, reverse_complement=True))
    tokens, _ = genome.tokens(lambda_name, 2000, 3500)
    fwd = direct_log2_probs(model, tokens)
    rc = direct_log2_probs(model, reverse_complement(tokens))[::-1]
    expected = np.where(np.isnan(fwd), rc, np.where(np.isnan(rc), fwd, (fwd + rc) / 2))
    np.testing.assert_allclose(both.log2_prob, expected, rtol=1e-4, atol=1e-4)
    assert np.isfinite(both.log2_prob).all()  # ends are scored by the other strand


def test_warmup_makes_segments_close_to_one_pass(model, lambda_fasta, lambda_name):
    genome = Genome(lambda_fasta)
    region = [Interval(lambda_name, 0, 6000)]
    (whole,) = plan_scoring(genome, region)
    one_pass = score_work_item(model, genome, whole, ScoringOptions(1000)).log2_prob
    diffs = {}
    for warmup in (0, 1000):
        parts = plan_scoring(genome, region, segment_length=2000, warmup=warmup)
        assert [(p.start, p.end) for p in parts] == [(0, 2000), (2000, 4000), (4000, 6000)]
        got = np.concatenate(
            [score_work_item(model, genome, p, ScoringOptions(1000)).log2_prob for p in parts]
        )
        diffs[warmup] = np.abs(got - one_pass)[2000:]
    # without warm-up a segment's first bases lack context; with it they nearly agree
    assert np.nanmax(diffs[1000]) < np.nanmax(diffs[0])
    assert np.nanmax(diffs[1000]) < 0.05


def test_score_genome_outputs_and_resume(model, tmp_path, lambda_fasta, lambda_name):
    text = lambda_fasta.read_text().splitlines()
    seq = "".join(text[1:])
    gappy = tmp_path / "gappy.fa"
    gappy.write_text(
        ">a\n" + seq[:1500] + "NNNNN" + seq[1500:3000] + "\n>b\n" + seq[5000:7000] + "\n"
    )
    genome = Genome(gappy)
    prefix = tmp_path / "out" / "run"
    outputs = score_genome(
        model,
        genome,
        prefix,
        options=ScoringOptions(800),
        progress=False,
        segment_length=1200,
        warmup=300,
        summary_window=500,
    )
    lines = gzip.decompress(outputs.bedgraphs["log2_prob"].read_bytes()).decode().splitlines()
    # every base except N and the first base of each contig
    assert len(lines) == (3005 - 5 - 1) + (2000 - 1)
    first = lines[0].split("\t")
    assert first[0] == "a" and first[1:3] == ["1", "2"]
    scored_a = {int(line.split("\t")[1]) for line in lines if line.startswith("a\t")}
    assert scored_a == set(range(1, 3005)) - set(range(1500, 1505))
    tabix = pysam.TabixFile(str(outputs.bedgraphs["entropy_bits"]))
    assert len(list(tabix.fetch("b", 100, 200))) == 100
    summary = pq.read_table(outputs.summary).to_pylist()
    assert [r["contig"] for r in summary].count("a") == 7 and summary[-1]["end"] == 2000
    assert sum(r["bases"] for r in summary) == 5005
    gap = next(r for r in summary if r["contig"] == "a" and r["start"] == 1500)
    assert gap["n_fraction"] == pytest.approx(5 / 500)
    assert gap["bits_per_base"] == pytest.approx(-gap["mean_log2_prob"])
    before = outputs.bedgraphs["log2_prob"].read_bytes()

    # resume: forget one item; only that one is scored again and the outputs are the same
    plan = plan_scoring(genome, segment_length=1200, warmup=300)
    store = ShardStore(f"{prefix}.shards")
    (store.directory / f"{plan[1].key}.json").unlink()
    untouched = (store.directory / plan[0].key / "log2_prob.npy").stat().st_mtime_ns
    score_genome(
        model,
        genome,
        prefix,
        options=ScoringOptions(800),
        progress=False,
        segment_length=1200,
        warmup=300,
        summary_window=500,
    )
    assert all(store.is_done(item) for item in plan)
    assert (store.directory / plan[0].key / "log2_prob.npy").stat().st_mtime_ns == untouched
    assert outputs.bedgraphs["log2_prob"].read_bytes() == before

    with pytest.raises(ValueError, match="another model"):
        other = GFSSMForCausalLM(model.config)
        score_genome(other, genome, prefix, segment_length=1200, warmup=300, progress=False)


def test_parallel_path_gives_identical_outputs(model, tmp_path, lambda_fasta, lambda_name):
    """What a Ray actor does: score items in memory, write each shard, then merge."""
    genome = Genome(lambda_fasta)
    regions = [Interval(lambda_name, 0, 2500), Interval(lambda_name, 30000, 31000)]
    options = ScoringOptions(600, reverse_complement=True)
    single = score_genome(
        model,
        genome,
        tmp_path / "single",
        regions=regions,
        options=options,
        segment_length=1000,
        warmup=200,
        progress=False,
    )
    plan = plan_scoring(genome, regions, segment_length=1000, warmup=200)
    store = ShardStore(tmp_path / "parallel.shards")
    for item in reversed(plan):  # any order
        store.write(score_work_item(model, genome, item, options))
    parallel = merge_shards(plan, store, tmp_path / "parallel")
    for track in ("log2_prob", "entropy_bits"):
        a = gzip.decompress(single.bedgraphs[track].read_bytes())
        b = gzip.decompress(parallel.bedgraphs[track].read_bytes())
        assert a == b and len(a) > 0
    assert pq.read_table(single.summary).equals(pq.read_table(parallel.summary))
