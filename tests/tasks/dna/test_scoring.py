"""Whole-genome scoring: streaming equals one forward pass, segments, reverse complement,
shards, resume and outputs (bedGraph, bigWig, trackDb, Parquet)."""

import gzip
from urllib.parse import unquote

import numpy as np
import pyarrow.parquet as pq
import pyBigWig
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
    # the region's first base has no context (no warm-up): the uniform prediction
    assert scores.log2_prob[0] == -2.0 and scores.entropy_bits[0] == 2.0
    np.testing.assert_allclose(scores.log2_prob[1:], expected[1:], rtol=1e-4, atol=1e-4)
    assert np.array_equal(scores.base, tokens.astype(np.uint8))
    assert np.all((scores.entropy_bits[1:] > 0) & (scores.entropy_bits[1:] <= 2.0 + 1e-6))


def test_first_base_of_a_region_reads_the_bases_before_it(model, lambda_fasta, lambda_name):
    genome = Genome(lambda_fasta)
    (item,) = plan_scoring(genome, [Interval(lambda_name, 1000, 2000)], warmup=1)
    assert (item.context_start, item.context_end) == (999, 2001)
    scores = score_work_item(model, genome, item, ScoringOptions(300))
    tokens, _ = genome.tokens(lambda_name, 999, 2000)
    expected = direct_log2_probs(model, tokens)[1:]  # base 1000 predicted from base 999
    np.testing.assert_allclose(scores.log2_prob, expected, rtol=1e-4, atol=1e-4)
    assert scores.log2_prob[0] != -2.0
    # a whole contig's first base: the uniform prediction forward only, the other
    # strand's prediction with the reverse complement
    (whole,) = plan_scoring(genome, [Interval(lambda_name, 0, 1000)], warmup=500)
    fwd = score_work_item(model, genome, whole, ScoringOptions(300))
    assert fwd.log2_prob[0] == -2.0 and np.isfinite(fwd.log2_prob).all()
    both = score_work_item(model, genome, whole, ScoringOptions(300, reverse_complement=True))
    tokens, _ = genome.tokens(lambda_name, 0, 1500)
    rc = direct_log2_probs(model, reverse_complement(tokens))[::-1]
    np.testing.assert_allclose(both.log2_prob[0], rc[0], rtol=1e-4, atol=1e-4)


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
    # every base except N, the first base of each contig included
    assert len(lines) == (3005 - 5) + 2000
    first = lines[0].split("\t")
    assert first[0] == "a" and first[1:4] == ["0", "1", "-2"]
    scored_a = {int(line.split("\t")[1]) for line in lines if line.startswith("a\t")}
    assert scored_a == set(range(0, 3005)) - set(range(1500, 1505))
    check_tracks(outputs, genome)
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
    parallel = merge_shards(
        plan,
        store,
        tmp_path / "parallel",
        chrom_sizes=genome.lengths,
        reverse_complement=True,
    )
    for track in ("log2_prob", "entropy_bits"):
        a = gzip.decompress(single.bedgraphs[track].read_bytes())
        b = gzip.decompress(parallel.bedgraphs[track].read_bytes())
        assert a == b and len(a) > 0
        assert single.bigwigs[track].read_bytes() == parallel.bigwigs[track].read_bytes()
    assert pq.read_table(single.summary).equals(pq.read_table(parallel.summary))


# bigWig tracks -----------------------------------------------------------------------------
BEDGRAPH_ROUNDING = 5e-5  # the bedGraphs hold values rounded to 4 decimals


def read_bedgraph(path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """contig -> (starts, values) of a bedGraph of one base per line."""
    rows: dict[str, tuple[list, list]] = {}
    for line in gzip.decompress(path.read_bytes()).decode().splitlines():
        contig, start, end, value = line.split("\t")
        assert int(end) == int(start) + 1
        rows.setdefault(contig, ([], []))
        rows[contig][0].append(int(start))
        rows[contig][1].append(float(value))
    return {c: (np.array(s), np.array(v)) for c, (s, v) in rows.items()}


def read_trackdb(path) -> list[dict[str, str]]:
    stanzas = path.read_text().strip().split("\n\n")
    return [dict(line.split(" ", 1) for line in stanza.splitlines()) for stanza in stanzas]


def check_tracks(outputs, genome: Genome) -> None:
    """Each bigWig holds exactly the bedGraph's bases and values (up to its rounding), its
    header has every contig of the FASTA index with its length, and trackDb names them."""
    fai = dict(line.split("\t")[:2] for line in genome.fai.read_text().splitlines())
    assert {c: int(n) for c, n in fai.items()} == genome.lengths
    for track, bw_path in outputs.bigwigs.items():
        expected = read_bedgraph(outputs.bedgraphs[track])
        bw = pyBigWig.open(str(bw_path))
        try:
            assert bw.isBigWig()
            assert bw.chroms() == genome.lengths
            assert list(bw.chroms()) == sorted(genome.lengths, key=str.encode)
            for contig, length in genome.lengths.items():
                intervals = bw.intervals(contig) or ()
                if contig not in expected:
                    assert intervals == (), contig
                    continue
                starts, values = expected[contig]
                got = np.array(intervals)
                assert np.array_equal(got[:, 0], starts), contig
                assert np.array_equal(got[:, 1], starts + 1), contig
                # half a unit of the 4th decimal, plus float32 rounding of the value
                tolerance = BEDGRAPH_ROUNDING + 4 * np.finfo(np.float32).eps * np.abs(values)
                assert np.all(np.abs(got[:, 2] - values) <= tolerance), contig
                # the dense view: NaN exactly where the bedGraph has no line (N bases)
                dense = bw.values(contig, 0, length, numpy=True)
                assert np.array_equal(np.flatnonzero(np.isfinite(dense)), starts), contig
        finally:
            bw.close()
    stanzas = read_trackdb(outputs.trackdb)
    folder = outputs.trackdb.parent
    assert sorted(unquote(s["bigDataUrl"]) for s in stanzas) == sorted(
        p.name for p in outputs.bigwigs.values()
    )
    for stanza in stanzas:
        assert " " not in stanza["bigDataUrl"]  # a URL: the file name percent-encoded
        assert (folder / unquote(stanza["bigDataUrl"])).is_file()
        assert stanza["type"] == "bigWig" and stanza["visibility"] == "full"
        assert stanza["autoScale"] == "on" and len(stanza["color"].split(",")) == 3
        assert len(stanza["shortLabel"]) <= 17 and len(stanza["longLabel"]) <= 76
        assert stanza["track"].replace("_", "").isalnum() and stanza["track"][0].isalpha()
    assert len({s["track"] for s in stanzas}) == len(stanzas)


@pytest.mark.parametrize("reverse_complement", [False, True])
def test_bigwig_tracks_equal_the_bedgraphs(
    model, tmp_path, lambda_text, lambda_name, reverse_complement
):
    """Contig names UCSC dislikes (``|``), contigs in non-sorted FASTA order, N runs, a BED
    region that starts after base 0 and a contig that is not scored at all."""
    fasta = tmp_path / "odd.fa"
    contigs = {
        lambda_name: lambda_text[:4000],
        "zeta": lambda_text[10000:11500] + "N" * 40 + lambda_text[11500:12000],
        "Alpha.2": lambda_text[20000:21000],
        "unscored": lambda_text[30000:30500],
    }
    fasta.write_text("".join(f">{name} some description\n{seq}\n" for name, seq in contigs.items()))
    genome = Genome(fasta)
    regions = [
        Interval(lambda_name, 0, 4000),
        Interval("zeta", 0, 2040),
        Interval("Alpha.2", 300, 1000),
    ]
    outputs = score_genome(
        model,
        genome,
        tmp_path / "out" / "odd genome",
        regions=regions,
        segment_length=900,
        warmup=100,
        options=ScoringOptions(700, reverse_complement=reverse_complement),
        progress=False,
    )
    check_tracks(outputs, genome)
    log2_prob = pyBigWig.open(str(outputs.bigwigs["log2_prob"]))
    entropy = pyBigWig.open(str(outputs.bigwigs["entropy_bits"]))
    # every base but N is scored, the first of each contig included
    for contig, length in (
        (lambda_name, 4000),
        ("zeta", 2040),
    ):
        values = log2_prob.values(contig, 0, length, numpy=True)
        assert np.isfinite(values).sum() == length - contigs[contig].count("N")
        assert np.isfinite(log2_prob.values(contig, 0, 1)[0])
    first = log2_prob.values(lambda_name, 0, 1)[0], entropy.values(lambda_name, 0, 1)[0]
    if reverse_complement:
        assert first[0] != -2.0  # the other strand's prediction
    else:
        assert first == (-2.0, 2.0)  # no context: the uniform prediction
    # the region at 300 reads its 100 warm-up bases: a model prediction, not the uniform one
    assert log2_prob.values("Alpha.2", 300, 301)[0] != -2.0
    assert np.isnan(log2_prob.values("Alpha.2", 0, 300, numpy=True)).all()
    log2_prob.close()
    entropy.close()
    stanzas = read_trackdb(outputs.trackdb)
    strands = "both strands averaged" if reverse_complement else "forward strand"
    assert all(strands in s["longLabel"] for s in stanzas)
