"""``gfssm eval dna-vep``: CDS reading, SNV classes (against Biopython translation of the
mutated record), AUROC, bad annotations, and the job end to end with a tiny model."""

import argparse
import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from Bio import SeqIO
from Bio.Seq import Seq

from gfssm import GFSSMForCausalLM
from gfssm.tasks import LoadedModel, TaskInputError, get_task
from gfssm.tasks.dna.markov import MarkovModel
from gfssm.tasks.dna.task_data import DnaData
from gfssm.tasks.dna.tokens import BASES, encode
from gfssm.tasks.dna.vep import CLASSES, auroc, cds_variants, read_genbank_cds, read_gff_cds
from gfssm.tasks.dna.vep.cds import AMBIGUOUS, PARTIAL_CODONS
from gfssm.tasks.dna.vep.scores import markov_log2_rows
from gfssm.tasks.dna.vep_command import add_vep_arguments, make_vep_job
from gfssm.tasks.jobs import run_job_inline

PHIX = "phiX174_NC_001422.gbk"


@pytest.fixture
def phix(tmp_path, data_dir):
    target = tmp_path / PHIX
    shutil.copy(data_dir / PHIX, target)
    return target


@pytest.fixture
def phix_minus(tmp_path, phix):
    """phiX reverse-complemented with its features: every CDS on the - strand, the
    origin-spanning joins become complement(join(...))."""
    record = SeqIO.read(phix, "genbank")
    flipped = record.reverse_complement(id=True, name=True, description=True, annotations=True)
    path = tmp_path / "phix_minus.gbk"
    SeqIO.write(flipped, path, "genbank")
    return path


def expected_classes(record, feature):
    """Per SNV of ``feature`` (in the order cds_variants lists them): the class found by
    mutating the whole record and translating the CDS with Biopython."""
    table = int(feature.qualifiers["transl_table"][0])
    reference = str(feature.extract(record.seq).translate(table=table))
    positions = []  # genomic positions in reading order, from Biopython's location
    for part in feature.location.parts:
        span = range(int(part.start), int(part.end))
        positions += list(span if part.strand > 0 else reversed(span))
    text = str(record.seq)
    out = []
    for i, pos in enumerate(positions):
        coding_ref = text[pos] if feature.location.strand > 0 else str(Seq(text[pos]).complement())
        for shift in (1, 2, 3):
            alt = BASES[(BASES.index(coding_ref) + shift) % 4]
            genomic_alt = alt if feature.location.strand > 0 else str(Seq(alt).complement())
            mutated = Seq(text[:pos] + genomic_alt + text[pos + 1 :])
            protein = str(feature.extract(mutated).translate(table=table))
            k = i // 3
            ref_aa, alt_aa = reference[k], protein[k]
            assert sum(a != b for a, b in zip(reference, protein)) <= 1
            if k == 0:
                out.append("start_codon")
            elif ref_aa == "*":
                out.append("stop_retained" if alt_aa == "*" else "stop_lost")
            elif alt_aa == "*":
                out.append("stop_gained")
            else:
                out.append("synonymous" if alt_aa == ref_aa else "missense")
    return out


@pytest.mark.parametrize("which", ["plus", "minus"])
def test_classes_match_biopython_translation_of_the_mutated_record(which, phix, phix_minus):
    path = phix if which == "plus" else phix_minus
    record = SeqIO.read(path, "genbank")
    features = [f for f in record.features if f.type == "CDS"]
    found = read_genbank_cds(path)
    assert len(found.cds) == len(features) == 11 and not found.skipped
    assert {c.strand for c in found.cds} == {1 if which == "plus" else -1}
    # the shortest origin-spanning join, join(5075..5386,1..51) (or its complement), and
    # the shortest single-part CDS, 848..964
    joined = [i for i, f in enumerate(features) if len(f.location.parts) == 2]
    single = [i for i, f in enumerate(features) if len(f.location.parts) == 1]
    for group in (joined, single):
        i = min(group, key=lambda i: len(features[i].location))
        cds, feature = found.cds[i], features[i]
        assert cds.coding_text(str(record.seq)) == str(feature.extract(record.seq))
        variants = cds_variants(cds, str(record.seq))
        got = [CLASSES[e] for e in variants.effect]
        assert got == expected_classes(record, feature)
        assert {"synonymous", "missense", "stop_gained"} <= set(got)
        # ref is the genome's base, alt differs from it, codon positions cycle 1, 2, 3
        genome_tokens = encode(str(record.seq))[0]
        assert (variants.ref == genome_tokens[variants.position]).all()
        assert (variants.alt != variants.ref).all()
        assert variants.codon_pos[:9].tolist() == [1, 1, 1, 2, 2, 2, 3, 3, 3]


def test_auroc_equals_brute_force_pair_counts_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        higher = rng.integers(0, 6, rng.integers(1, 30)).astype(float)
        lower = rng.integers(0, 6, rng.integers(1, 30)).astype(float)
        pairs = [
            (1.0 if a > b else 0.5 if a == b else 0.0) for a, b in itertools.product(higher, lower)
        ]
        assert auroc(higher, lower) == pytest.approx(np.mean(pairs))
    assert auroc([2.0, 3.0], [0.0, 1.0]) == 1.0 and auroc([1.0], [1.0]) == 0.5
    assert np.isnan(auroc([], [1.0])) and auroc([1.0, np.nan], [0.0]) == 1.0


def test_markov_rows_agree_with_markov_scores(lambda_text):
    tokens = encode(lambda_text[:3000])[0]
    markov = MarkovModel(4, alpha=2.0).fit(encode(lambda_text[5000:20000])[0])
    at = np.arange(1, tokens.size)
    rows = markov_log2_rows(markov, tokens, at)
    scores = markov.score(tokens, first=1)
    assert np.allclose(rows[np.arange(at.size), tokens[at]], scores.logprob / np.log(2))
    assert np.allclose(np.exp2(rows).sum(axis=1), 1.0)


def test_genbank_without_cds_is_one_line_error(tmp_path, phix):
    text = phix.read_text()
    head, _, rest = text.partition("FEATURES")
    origin = rest[rest.index("ORIGIN") :]
    plain = tmp_path / "nocds.gbk"
    plain.write_text(head + "FEATURES             Location/Qualifiers\n" + origin)
    found = read_genbank_cds(plain)
    with pytest.raises(TaskInputError, match="no CDS features") as err:
        found.require_usable()
    assert "\n" not in str(err.value)


def test_partial_codons_and_ambiguous_bases_are_counted_and_skipped(tmp_path, phix):
    text = phix.read_text()
    # CDS 51..221 (57 codons) becomes 51..220: not whole codons
    text = text.replace("     CDS             51..221", "     CDS             51..220")
    # an N inside the CDS 848..964 (ORIGIN lines: 60 bases, number + 6 groups of 10)
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("841 "))
    groups = lines[at].split()
    groups[2] = "n" + groups[2][1:]  # base 851 (groups[1] holds bases 841-850)
    lines[at] = f"{int(groups[0]):>9} " + " ".join(groups[1:])
    bad = tmp_path / "bad.gbk"
    bad.write_text("\n".join(lines) + "\n")
    found = read_genbank_cds(bad)
    assert found.skipped == {PARTIAL_CODONS: 1, AMBIGUOUS: 1}
    assert len(found.cds) == 9
    line = found.skipped_line()
    assert "2 of 11 CDS skipped" in line and "9 kept" in line and "\n" not in line


def test_gff_and_fasta_give_the_genbank_cds(tmp_path, phix_minus):
    """The - strand CDS of phiX as GFF3 lines, in reverse file order, long ones cut in two
    parts (one CDS per Parent); the origin-spanning joins are left out (GFF3 writes those
    past the contig's end)."""
    from gfssm.tasks.dna import Genome

    record = SeqIO.read(phix_minus, "genbank")
    fasta = tmp_path / "phix.fa"
    fasta.write_text(f">{record.id}\n{record.seq}\n")
    rows, kept = [], []
    for n, f in enumerate(x for x in record.features if x.type == "CDS"):
        if len(f.location.parts) > 1:
            continue
        kept.append(str(f.extract(record.seq)))
        start, end = int(f.location.start) + 1, int(f.location.end)
        cut = start + 300 if end - start > 600 else end
        spans = [(start, cut), (cut + 1, end)] if cut < end else [(start, end)]
        for a, b in spans:
            rows.append(f"{record.id}\tRefSeq\tCDS\t{a}\t{b}\t.\t-\t0\tParent=tx{n};Name=g{n}")
    gff = tmp_path / "phix.gff3"
    gff.write_text("##gff-version 3\n" + "\n".join(rows[::-1]) + "\n")
    found = read_gff_cds(gff, Genome(fasta, cache_dir=tmp_path / "cache"), table=11)
    assert len(rows) > len(kept) == len(found.cds) == 8 and not found.skipped
    text = str(record.seq)
    assert sorted(c.coding_text(text) for c in found.cds) == sorted(kept)
    assert {c.gene for c in found.cds} == {f"g{n}" for n in range(3, 11)}


def vep_args(tmp_path, **values):
    parser = argparse.ArgumentParser()
    add_vep_arguments(parser)
    argv = [f"--{k.replace('_', '-')}={v}" for k, v in values.items() if v is not True]
    argv += [f"--{k.replace('_', '-')}" for k, v in values.items() if v is True]
    return parser.parse_args(argv)


@pytest.fixture
def loaded(tiny_config, seeded, phix, lambda_text, tmp_path):
    """A tiny untrained model whose training genome was lambda + phiX, phiX held out."""
    record = SeqIO.read(phix, "genbank")
    both = tmp_path / "train.fa"
    both.write_text(f">lambda\n{lambda_text}\n>{record.id}\n{record.seq}\n")
    task = get_task("dna")
    settings = task.settings({"fasta": str(both), "val_contigs": [record.id], "markov_order": 3})
    model = GFSSMForCausalLM(tiny_config).eval()
    return LoadedModel(task=task, model=model, config=tiny_config, settings=settings, meta={})


def test_job_end_to_end(tmp_path, phix, loaded, lambda_text):
    user = tmp_path / "user"
    user.mkdir()
    shutil.copy(phix, user / PHIX)
    args = vep_args(tmp_path, genbank=PHIX, out="vep", flank=64)
    job = make_vep_job(args, user, loaded)
    assert job.summary() == "Markov baseline: order 3, fitted on the model's training regions"
    lines = []
    worker_markov = DnaData(job.markov_settings).markov
    assert worker_markov.bases_seen == len(lambda_text)  # the training contig only
    assert run_job_inline(job, loaded, lines.append) == 0
    table = pq.read_table(user / "vep" / "variants.parquet").to_pandas()
    summary = json.loads((user / "vep" / "summary.json").read_text())
    coding = sum(len(c.positions()) for c in read_genbank_cds(phix).cds)
    assert len(table) == 3 * coding == summary["variants"]
    assert summary["counts"]["stop_gained"] == (table["class"] == "stop_gained").sum() > 0
    for scorer in ("model", "markov"):
        assert table[f"{scorer}_score"].notna().all()
        for value in summary["auroc"][scorer].values():
            assert 0.0 <= value <= 1.0
    # three alternatives per coding base, each scored from the same four-base prediction
    assert table.groupby(["contig", "pos", "gene"])["model_score"].nunique().max() == 3
    assert set(summary["entropy_bits"]["model"]) == {"1", "2", "3"}
    assert 0.0 <= summary["auroc_matched"]["model"]["missense_vs_synonymous"] <= 1.0
    assert any("AUROC stop gained vs synonymous" in line for line in lines)
    # the codon score: the position score plus a look-ahead that is not zero; NaN only in
    # the codons split by phiX's origin-spanning join (gene A, both strands)
    for scorer in ("model", "markov"):
        codon = table[f"{scorer}_codon_score"]
        assert 0 < codon.isna().sum() <= 2 * 3 * 3
        assert (codon - table[f"{scorer}_score"]).abs().max() > 0.01
        assert 0.0 <= summary["auroc_codon"][scorer]["missense_vs_synonymous"] <= 1.0
    assert any("codon score: AUROC missense vs synonymous" in line for line in lines)
    # the amino-acid score: exactly 0 for a synonymous change (its codons are summed
    # together), never for a change of amino acid; the genetic code's own reference
    for scorer in ("model", "markov"):
        amino = table[f"{scorer}_aa_score"]
        assert (amino.isna() == table[f"{scorer}_codon_score"].isna()).all()  # joins
        amino, effect = amino[amino.notna()], table["class"][amino.notna()]
        assert (amino[effect == "synonymous"] == 0).all()
        assert (amino[effect.isin(["missense", "stop_gained"])] != 0).all()
        # so the AUROC is the fraction of damaging changes scored below 0
        stop_gained = summary["auroc_aa"][scorer]["stop_gained_vs_synonymous"]
        assert stop_gained == pytest.approx((amino[effect == "stop_gained"] < 0).mean(), abs=1e-9)
    assert set(summary["auroc_aa_uniform"]) == {
        "stop_gained_vs_synonymous",
        "missense_vs_synonymous",
    }
    assert any("amino-acid score: AUROC missense vs synonymous" in line for line in lines)
    # the numbers pipelines record in MLflow: flat names, every AUROC among them
    recorded = job.metrics()
    assert recorded["auroc_aa/model/missense_vs_synonymous"] == pytest.approx(
        summary["auroc_aa"]["model"]["missense_vs_synonymous"]
    )
    assert recorded["auroc_aa_uniform/stop_gained_vs_synonymous"] == pytest.approx(
        summary["auroc_aa_uniform"]["stop_gained_vs_synonymous"]
    )
    assert recorded["counts/missense"] == summary["counts"]["missense"]
    assert recorded["entropy_bits/markov/3"] == pytest.approx(
        summary["entropy_bits"]["markov"]["3"]
    )
    aurocs = [k for k, v in summary.items() if k.startswith("auroc")]
    assert len([k for k in recorded if k.split("/")[0] in aurocs]) == 2 * 2 * 6 + 2
    assert any("every codon equally likely" in line for line in lines)


def test_uniform_aa_score_counts_the_codons_of_each_amino_acid():
    from gfssm.tasks.dna.vep.effects import uniform_aa_score

    letters = np.frombuffer(b"LMWS*", np.uint8)
    # standard code: Leu 6 codons, Met 1, Trp 1, Ser 6, stop 3; the bacterial code (11)
    # has the same counts (it differs in start codons only)
    for table in (1, 11):
        got = uniform_aa_score(table, letters[[0, 1, 3, 0]], letters[[1, 2, 0, 4]])
        np.testing.assert_allclose(got, np.log2([1 / 6, 1 / 1, 6 / 6, 3 / 6]), rtol=1e-6)
    # the vertebrate mitochondrial code (2): AGA/AGG are stops, TGA is Trp, ATA is Met
    got = uniform_aa_score(2, letters[[1, 2]], letters[[4, 0]])
    np.testing.assert_allclose(got, np.log2([4 / 2, 6 / 2]), rtol=1e-6)


def test_cds_groups_split_a_contig_in_order_and_keep_every_cds_once(phix):
    from gfssm.tasks.dna.vep.job import cds_groups

    cds = read_genbank_cds(phix).cds
    groups = cds_groups(cds, size=1000)
    assert len(groups) > 2
    flat = [c for group in groups for c in group]
    assert sorted(flat, key=lambda c: c.gene) == sorted(cds, key=lambda c: c.gene)
    starts = [min(p[0] for p in c.parts) for c in flat]
    assert starts == sorted(starts)
    for group in groups[:-1]:  # each group closes once it holds `size` coding bases
        assert sum(c.positions().size for c in group) >= 1000
        assert sum(c.positions().size for c in group[:-1]) < 1000
    assert cds_groups(cds) == [sorted(cds, key=lambda c: min(p[0] for p in c.parts))]


def test_no_codon_score_leaves_it_out(tmp_path, phix, loaded):
    args = vep_args(tmp_path, genbank=str(phix), out=str(tmp_path / "v"), no_codon_score=True)
    job = make_vep_job(args, tmp_path, loaded)
    assert run_job_inline(job, loaded, lambda line: None) == 0
    table = pq.read_table(tmp_path / "v" / "variants.parquet")
    assert "model_codon_score" not in table.column_names
    assert "model_aa_score" not in table.column_names
    summary = json.loads((tmp_path / "v" / "summary.json").read_text())
    assert "auroc_codon" not in summary and "auroc_aa" not in summary


def test_contigs_the_model_trained_on_are_refused(tmp_path, phix, loaded):
    settings = loaded.settings.model_copy(update={"val_contigs": ("other",)})
    trained = LoadedModel(loaded.task, loaded.model, loaded.config, settings, {})
    args = vep_args(tmp_path, genbank=str(phix), out=str(tmp_path / "o"))
    with pytest.raises(TaskInputError, match="held-out contigs"):
        make_vep_job(args, tmp_path, trained)
    args = vep_args(tmp_path, genbank=str(phix), out=str(tmp_path / "o"), contigs="NC_001422.1")
    with pytest.raises(TaskInputError, match="--allow-train-contigs"):
        make_vep_job(args, tmp_path, trained)
    args.allow_train_contigs = True
    assert make_vep_job(args, tmp_path, trained).items[0]["contig"] == "NC_001422.1"


def test_model_rows_are_both_strands_of_one_plain_forward_pass(phix, tiny_config, seeded):
    """The streamed rows equal a plain forward pass over the region on each strand, the
    reverse strand's prediction of the complement mapped back to + strand bases."""
    import torch

    from gfssm.tasks.dna import Genome
    from gfssm.tasks.dna.objective import base_log_probs
    from gfssm.tasks.dna.tokens import reverse_complement
    from gfssm.tasks.dna.vep.scores import model_rows, region_streams

    model = GFSSMForCausalLM(tiny_config).eval()
    genome = Genome(phix, cache_dir=phix.parent / "cache")
    contig, (a, b) = "NC_001422.1", (100, 400)
    positions = np.arange(150, 350)
    rows = model_rows(
        model, [(a, b)], region_streams(genome, contig, [(a, b)]), positions, piece_length=64
    )
    tokens = genome.tokens(contig, a, b)[0]
    with torch.no_grad():
        fwd = base_log_probs(model(torch.from_numpy(tokens)[None]))[0].numpy() / np.log(2)
        rc = reverse_complement(tokens)
        rev = base_log_probs(model(torch.from_numpy(rc)[None]))[0].numpy() / np.log(2)
    forward = fwd[positions - a - 1]  # row i predicts base i + 1
    reverse = rev[(b - 1 - positions) - 1][:, ::-1]  # stream index of p is b - 1 - p
    assert np.allclose(rows.log2_prob, (forward + reverse) / 2, atol=2e-4)
    # the two strands differ, so the average above is not a one-strand coincidence
    ref = tokens[positions - a]
    assert not np.allclose(forward[np.arange(200), ref], reverse[np.arange(200), ref])


def test_baseline_falls_back_to_the_evaluated_file_when_training_data_is_gone(
    tmp_path, phix, loaded
):
    Path(loaded.settings.fasta).unlink()
    args = vep_args(tmp_path, genbank=str(phix), out=str(tmp_path / "o"))
    job = make_vep_job(args, tmp_path, loaded)
    assert "baseline is uniform" in job.summary()
    assert job.markov_settings.val_contigs == ("NC_001422.1",)


def test_matched_auroc_counts_only_pairs_within_a_stratum():
    from gfssm.tasks.dna.vep.metrics import matched_auroc

    rng = np.random.default_rng(1)
    higher, lower = rng.integers(0, 5, 40).astype(float), rng.integers(0, 5, 30).astype(float)
    sh, sl = rng.integers(0, 3, 40), rng.integers(1, 4, 30)
    pairs = [
        1.0 if a > b else 0.5 if a == b else 0.0
        for (a, x), (b, y) in itertools.product(zip(higher, sh), zip(lower, sl))
        if x == y
    ]
    assert matched_auroc(higher, lower, sh, sl) == pytest.approx(np.mean(pairs))
