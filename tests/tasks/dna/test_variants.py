"""Variant effect scoring from a VCF, and the HISAT2 .snp -> VCF conversion."""

import logging
import shutil

import numpy as np
import pyarrow.parquet as pq
import pysam
import pytest
import torch

from gfssm import GFSSMForCausalLM
from gfssm.tasks.dna import Genome
from gfssm.tasks.dna.genome import ContigNameError
from gfssm.tasks.dna.snp_to_vcf import snp_to_vcf_lines, write_vcf
from gfssm.tasks.dna.tokens import encode, reverse_complement_text
from gfssm.tasks.dna.variants import read_variants, score_variant_batch, score_vcf

FLANK = 40


@pytest.fixture
def model(tiny_config, seeded):
    return GFSSMForCausalLM(tiny_config).eval()


def write_vcf_text(path, chrom, rows, contig_header=True):
    header = ["##fileformat=VCFv4.2"]
    if contig_header:
        header.append(f"##contig=<ID={chrom},length=48502>")
    header.append("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO")
    body = [f"{chrom}\t{pos}\t{vid}\t{ref}\t{alt}\t.\t.\t." for pos, vid, ref, alt in rows]
    path.write_text("\n".join(header + body) + "\n")
    return path


def lambda_rows(text):
    """An SNV with two ALTs, a deletion, an insertion, a REF mismatch, a symbolic ALT."""
    snv_ref = text[99]
    alts = ",".join(b for b in "ACGT" if b != snv_ref)
    wrong = "A" if text[2999] != "A" else "C"
    return [
        (100, "snv", snv_ref, alts),
        (1000, "del", text[999:1003], text[999]),
        (2000, "ins", text[1999], text[1999] + "GATTACA"),
        (3000, "bad_ref", wrong, "G"),
        (4000, "sym", text[3999], "<DEL>"),
    ]


def log2p(model, seq: str) -> float:
    ids = torch.from_numpy(encode(seq)[0])[None]
    with torch.no_grad():
        lp = torch.log_softmax(model(ids)[0, :-1, :4].double(), -1)
    return float(lp[torch.arange(ids.shape[1] - 1), ids[0, 1:]].sum() / np.log(2))


def test_scores_are_alt_minus_ref_window_log_likelihood(
    model, lambda_fasta, lambda_text, lambda_name, tmp_path
):
    genome = Genome(lambda_fasta)
    vcf = write_vcf_text(tmp_path / "v.vcf", lambda_name, lambda_rows(lambda_text))
    records = list(read_variants(vcf, genome, flank=FLANK))
    assert [r.skip for r in records] == [None, None, None, "REF_MISMATCH", "UNSUPPORTED_ALLELE"]
    assert records[0].line == 4 and records[3].line == 7
    scores = score_variant_batch(model, records)
    deletion = records[1]
    left, right = lambda_text[999 - FLANK : 999], lambda_text[1003 : 1003 + FLANK]
    ref_w, alt_w = left + lambda_text[999:1003] + right, left + lambda_text[999] + right
    assert deletion.alleles[0].ref_window == ref_w and deletion.alleles[0].alt_window == alt_w
    forward = log2p(model, alt_w) - log2p(model, ref_w)
    reverse = log2p(model, reverse_complement_text(alt_w)) - log2p(
        model, reverse_complement_text(ref_w)
    )
    assert scores[1].llr_forward[0] == pytest.approx(forward, abs=1e-3)
    assert scores[1].llr_reverse[0] == pytest.approx(reverse, abs=1e-3)
    assert scores[1].llr[0] == pytest.approx((forward + reverse) / 2, abs=1e-3)
    assert len(scores[0].llr) == 3 and scores[3].llr == [] and scores[4].llr == []
    # one record at a time gives exactly the same numbers as the whole batch
    alone = [score_variant_batch(model, [r])[0] for r in records]
    assert [a.llr for a in alone] == [s.llr for s in scores]


def test_score_vcf_writes_annotated_vcf_and_table(
    model, lambda_fasta, lambda_text, lambda_name, tmp_path, caplog
):
    genome = Genome(lambda_fasta)
    vcf = write_vcf_text(tmp_path / "v.vcf", lambda_name, lambda_rows(lambda_text))
    with caplog.at_level(logging.WARNING):
        out = score_vcf(
            model,
            genome,
            vcf,
            tmp_path / "out" / "lambda",
            flank=FLANK,
            batch_size=2,
            progress=False,
        )
    assert "line 7" in caplog.text and "REF mismatch" in caplog.text
    # one count per table row, i.e. per ALT allele (the SNV has three)
    assert out.counts == {"scored": 5, "REF_MISMATCH": 1, "UNSUPPORTED_ALLELE": 1}
    assert out.index == out.vcf.with_name(out.vcf.name + ".tbi") and out.index.exists()
    annotated = list(pysam.VariantFile(str(out.vcf)))
    assert [r.id for r in annotated] == ["snv", "del", "ins", "bad_ref", "sym"]
    assert len(annotated[0].info["GFSSM_LLR"]) == 3
    assert annotated[3].info["GFSSM_SKIP"] == "REF_MISMATCH"
    assert "GFSSM_LLR" not in annotated[3].info
    table = pq.read_table(out.table).to_pylist()
    assert len(table) == 3 + 1 + 1 + 1 + 1
    bad = next(row for row in table if row["id"] == "bad_ref")
    assert bad["status"] == "REF_MISMATCH" and np.isnan(bad["llr"])
    assert repr(lambda_text[2999]) in bad["detail"]


def test_contig_name_mismatch_is_detected_and_aliased(
    model, lambda_fasta, lambda_text, lambda_name, tmp_path
):
    vcf = write_vcf_text(tmp_path / "v.vcf", "NC_001416", lambda_rows(lambda_text)[:1])
    with pytest.raises(ContigNameError) as err:
        list(read_variants(vcf, Genome(lambda_fasta), flank=FLANK))
    message = str(err.value)
    assert str(vcf) in message and lambda_name in message and "contig_aliases" in message
    aliased = Genome(lambda_fasta, aliases={"NC_001416": lambda_name})
    out = score_vcf(model, aliased, vcf, tmp_path / "aliased", flank=FLANK, progress=False)
    assert out.counts == {"scored": 3}  # one SNV record, three ALTs
    # without ##contig lines the first record names the problem
    bare = write_vcf_text(
        tmp_path / "bare.vcf", "NC_001416", lambda_rows(lambda_text)[:1], contig_header=False
    )
    with pytest.raises(ContigNameError, match="line 3"):
        list(read_variants(bare, Genome(lambda_fasta), flank=FLANK))


def test_hisat2_snp_file_becomes_a_vcf_whose_refs_match(tmp_path, data_dir, model):
    fasta = tmp_path / "chr22.fa"
    shutil.copy(data_dir / "chr22_20M_head.fa", fasta)
    genome = Genome(fasta)
    lines, problems = snp_to_vcf_lines(data_dir / "chr22_20M_head.snp", genome)
    assert len(lines) == 91 and problems == []
    seq = genome.fetch(genome.contigs[0], 0, 20000)
    by_id = {v.id: v for v in lines}
    snv = by_id["rs73387790"]  # single at offset 145, ALT A
    assert (snv.pos, snv.ref, snv.alt) == (146, seq[145], "A")
    deletion = by_id["rs71788814"]  # deletion of 2 bases starting at offset 1587
    assert (deletion.pos, deletion.ref, deletion.alt) == (1587, seq[1586:1589], seq[1586])
    insertion = by_id["rs10678141"]  # AG inserted before offset 3490
    assert (insertion.pos, insertion.ref, insertion.alt) == (3490, seq[3489], seq[3489] + "AG")
    vcf = write_vcf(lines, genome, tmp_path / "head.vcf", source="test")
    assert [r.pos for r in pysam.VariantFile(str(vcf))] == sorted(v.pos for v in lines)
    records = list(read_variants(vcf, genome, flank=16))
    assert all(r.skip is None for r in records)
