"""The DNA task as the command line drives it: prepare(), the batch jobs of ``gfssm score
genome|variants`` (run in one process with run_job_inline, compared with the
single-process scorers), the data steps, and files as users have them."""

import argparse
import bz2
import gzip
import logging
import lzma
import pickle
import shutil

import pyarrow.parquet as pq
import pysam
import pytest

from gfssm.tasks import TaskInputError
from gfssm.tasks.dna import Genome
from gfssm.tasks.dna.fasta_format import FastaFormatError, UnsupportedCompressionError
from gfssm.tasks.dna.genome import ContigNameError, MissingFileError
from gfssm.tasks.dna.regions import BedFormatError, Interval
from gfssm.tasks.dna.scoring import ScoringOptions, score_genome
from gfssm.tasks.dna.settings import DnaSettings
from gfssm.tasks.dna.snp_to_vcf import SnpFormatError
from gfssm.tasks.dna.tokens import InvalidBaseError
from gfssm.tasks.dna.variants import VcfFormatError, score_vcf
from gfssm.tasks.dna.windows import WindowError
from gfssm.tasks.jobs import run_job_inline

HEADER = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"


def command(task, command, name):
    (found,) = [c for c in task.commands() if (c.command, c.name) == (command, name)]
    return found


def parse(task, name, argv, group="score"):
    parser = argparse.ArgumentParser()
    command(task, group, name).add_arguments(parser)
    return parser.parse_args(argv)


def make_job(task, name, argv, base_dir, loaded):
    return command(task, "score", name).make_job(parse(task, name, argv), base_dir, loaded)


def test_every_input_error_is_a_task_input_error():
    for cls in (
        FastaFormatError,
        UnsupportedCompressionError,
        BedFormatError,
        VcfFormatError,
        ContigNameError,
        WindowError,
        SnpFormatError,
        InvalidBaseError,
        MissingFileError,
    ):
        assert issubclass(cls, TaskInputError), cls
    assert issubclass(ContigNameError, KeyError) and issubclass(MissingFileError, FileNotFoundError)


def test_commands_and_predictor(task, loaded):
    names = [(c.command, c.name, c.make_job is not None) for c in task.commands()]
    assert names == [
        ("score", "genome", True),
        ("score", "variants", True),
        ("embed", None, True),
        ("eval", "dna-vep", True),
        ("data", "index", False),
        ("data", "genbank", False),
        ("data", "bgzip", False),
        ("data", "snp2vcf", False),
    ]
    spec = task.predictor()
    assert spec.inputs == (("sequence", "string"),)
    assert [name for name, _ in spec.outputs] == ["log2_prob", "bits_per_base", "length"]
    import pandas as pd

    out = spec.predict(loaded, pd.DataFrame(spec.example))
    assert out["length"].tolist() == [20] and out["bits_per_base"][0] > 0
    with pytest.raises(TaskInputError, match="'sequence' column"):
        spec.predict(loaded, pd.DataFrame({"seq": ["ACGT"]}))
    assert task.usage_hint("RUN").startswith("gfssm score genome --model RUN --fasta ")
    own = task.usage_hint("RUN", DnaSettings(fasta="my genomes/a.fa"))
    assert own.startswith("gfssm score genome --model RUN --fasta 'my genomes/a.fa' --out ")


# Whole genomes ----------------------------------------------------------------------------
def test_genome_job_equals_single_process_scoring(task, loaded, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(loaded.settings.fasta, work / "lambda.fa")
    (work / "r.bed").write_text(
        "gi|9626243|ref|NC_001416.1|\t0\t2500\ngi|9626243|ref|NC_001416.1|\t30000\t31000\n"
    )
    monkeypatch.chdir(tmp_path)  # the user's folder is another one: paths are resolved
    argv = "--fasta lambda.fa --regions r.bed --out scores --segment 1000 --warmup 200"
    job = make_job(task, "genome", [*argv.split(), "--reverse-complement"], work, loaded)
    assert job.prefix == work / "scores" / "lambda"
    assert job.shard_dir() == work / "scores" / "lambda.shards"
    items = job.plan()
    assert [i.key for i in items][:2] == [
        "00000_gi_9626243_ref_NC_001416.1_0_1000",
        "00001_gi_9626243_ref_NC_001416.1_1000_2000",
    ]
    assert sum(i.size for i in items) == 2 * 3500  # bases, both strands
    shipped = pickle.dumps(job)
    assert len(shipped) < 5000
    assert pickle.loads(shipped).fingerprint() == job.fingerprint()
    lines = []
    assert run_job_inline(pickle.loads(shipped), loaded, lines.append) == 0
    assert any("log2_prob.bedGraph.gz" in line for line in lines)

    single = score_genome(
        loaded.model,
        Genome(work / "lambda.fa"),
        tmp_path / "single",
        regions=[
            Interval(job.genome.contigs[0], 0, 2500),
            Interval(job.genome.contigs[0], 30000, 31000),
        ],
        segment_length=1000,
        warmup=200,
        options=ScoringOptions(reverse_complement=True),
        progress=False,
    )
    for track, path in single.bedgraphs.items():
        ours = work / "scores" / f"lambda.{track}.bedGraph.gz"
        assert gzip.decompress(ours.read_bytes()) == gzip.decompress(path.read_bytes())
        assert (work / "scores" / f"lambda.{track}.bedGraph.gz.tbi").exists()
        ours_bw = work / "scores" / f"lambda.{track}.bw"
        assert ours_bw.read_bytes() == single.bigwigs[track].read_bytes()
    assert any("lambda.trackDb.txt" in line for line in lines)
    trackdb = (work / "scores" / "lambda.trackDb.txt").read_text()
    assert "bigDataUrl lambda.log2_prob.bw" in trackdb
    assert "bigDataUrl lambda.entropy_bits.bw" in trackdb
    ours = pq.read_table(work / "scores" / "lambda.windows.parquet")
    assert ours.equals(pq.read_table(single.summary))


def test_genome_job_inputs_are_checked_in_the_driver(task, loaded, tmp_path):
    shutil.copy(loaded.settings.fasta, tmp_path / "g.fa")
    with pytest.raises(TaskInputError, match=r"--fasta nope.fa: no such file"):
        make_job(task, "genome", ["--fasta", "nope.fa", "--out", "o"], tmp_path, loaded)
    (tmp_path / "bad.bed").write_text("chrX\t1\t5\n")
    with pytest.raises(BedFormatError, match=r"bad.bed line 1: contig 'chrX'"):
        make_job(
            task,
            "genome",
            ["--fasta", "g.fa", "--regions", "bad.bed", "--out", "o"],
            tmp_path,
            loaded,
        )
    (tmp_path / "alias.bed").write_text("NC_001416\t1\t5\n")
    with pytest.raises(BedFormatError, match=r"alias.bed line 1: .*--alias NAME_IN_FILE="):
        make_job(
            task,
            "genome",
            ["--fasta", "g.fa", "--regions", "alias.bed", "--out", "o"],
            tmp_path,
            loaded,
        )
    job = make_job(
        task,
        "genome",
        [
            "--fasta",
            "g.fa",
            "--regions",
            "alias.bed",
            "--out",
            "o",
            "--alias",
            "NC_001416=gi|9626243|ref|NC_001416.1|",
        ],
        tmp_path,
        loaded,
    )
    assert [i.size for i in job.plan()] == [4.0]
    with pytest.raises(TaskInputError, match="--segment 0"):
        make_job(
            task, "genome", ["--fasta", "g.fa", "--out", "o", "--segment", "0"], tmp_path, loaded
        )
    with pytest.raises(TaskInputError, match="--alias 'x': expected NAME_IN_FILE=FASTA_CONTIG"):
        make_job(
            task, "genome", ["--fasta", "g.fa", "--out", "o", "--alias", "x"], tmp_path, loaded
        )


# Variants ---------------------------------------------------------------------------------
def variant_rows(text, name):
    """SNV, multi-allelic with a symbolic and a * ALT, deletion, insertion, REF mismatch."""
    wrong = "A" if text[2999] != "A" else "C"
    other = next(b for b in "ACGT" if b != text[199])
    rows = [
        (100, "snv", text[99], next(b for b in "ACGT" if b != text[99])),
        (200, "multi", text[199], f"{other},<DEL>,*"),
        (1000, "del", text[999:1003], text[999]),
        (2000, "ins", text[1999], text[1999] + "GATTACA"),
        (3000, "bad_ref", wrong, "G"),
        (4000, "sym", text[3999], "<INS>"),
    ]
    return "".join(f"{name}\t{p}\t{i}\t{r}\t{a}\t.\t.\t.\n" for p, i, r, a in rows)


@pytest.mark.parametrize("form", ["plain", "gzip", "bgzip", "bz2", "xz", "bcf", "crlf"])
def test_variant_job_reads_vcfs_as_users_have_them(
    task, loaded, tmp_path, lambda_text, lambda_name, form, capfd
):
    """No ##contig lines, one record per ALT in the table, symbolic/* ALTs counted, the
    same results as the single-process scorer, an indexed VCF and a quiet console."""
    text = HEADER + variant_rows(lambda_text, lambda_name)
    plain = tmp_path / "calls.vcf"
    plain.write_text(text)
    reference = score_vcf(
        loaded.model,
        Genome(loaded.settings.fasta),
        plain,
        tmp_path / "ref",
        flank=32,
        progress=False,
    )
    writers = {
        "plain": lambda p: p.write_text(text),
        "crlf": lambda p: p.write_bytes(text.replace("\n", "\r\n").encode()),
        "gzip": lambda p: p.write_bytes(gzip.compress(text.encode())),
        "bz2": lambda p: p.write_bytes(bz2.compress(text.encode())),
        "xz": lambda p: p.write_bytes(lzma.compress(text.encode())),
    }
    name = {"plain": "in.vcf", "crlf": "in.vcf", "bcf": "in.bcf"}.get(form, f"in.vcf.{form}")
    path = tmp_path / "user" / name
    path.parent.mkdir()
    if form in writers:
        writers[form](path)
    elif form == "bgzip":
        pysam.tabix_compress(str(plain), str(path))
    else:
        header = (
            f"##fileformat=VCFv4.2\n##contig=<ID={lambda_name},length=48502>\n"
            '##INFO=<ID=END,Number=1,Type=Integer,Description="End">\n'
        )
        with_contigs = tmp_path / "with_contigs.vcf"
        with_contigs.write_text(header + text.split("\n", 1)[1])
        src = pysam.VariantFile(str(with_contigs))
        with pysam.VariantFile(str(path), "wb", header=src.header) as out:
            for rec in src:
                out.write(rec)
    capfd.readouterr()
    argv = f"--fasta {loaded.settings.fasta} --vcf {name} --out res/scored.vcf.gz --flank 32"
    job = make_job(task, "variants", argv.split(), tmp_path / "user", loaded)
    assert job.prefix == tmp_path / "user" / "res" / "scored"
    shipped = pickle.loads(pickle.dumps(job))
    assert shipped.records is None  # the records travel in the work items, not the job
    lines = []
    assert run_job_inline(shipped, loaded, lines.append) == 0
    err = capfd.readouterr().err
    assert "Contig" not in err and "[W::" not in err and "[E::" not in err
    assert "ALT alleles: REF_MISMATCH 1, UNSUPPORTED_ALLELE 3, scored 4" in lines[0]
    out_vcf = tmp_path / "user" / "res" / "scored.vcf.gz"
    assert (tmp_path / "user" / "res" / "scored.vcf.gz.tbi").exists()
    assert next(iter(pysam.VariantFile(str(out_vcf)).fetch(lambda_name, 150, 250))).id == "multi"
    ours = pq.read_table(tmp_path / "user" / "res" / "scored.variants.parquet").to_pylist()
    theirs = pq.read_table(reference.table).to_pylist()
    key = ("id", "alt", "status", "llr", "llr_forward", "llr_reverse")

    def rows(table):
        return [[None if r[k] != r[k] else r[k] for k in key] for r in table]  # NaN -> None

    assert rows(ours) == rows(theirs) and len(ours) == 8
    multi = [r for r in ours if r["id"] == "multi"]
    assert [r["status"] for r in multi] == ["scored", "UNSUPPORTED_ALLELE", "UNSUPPORTED_ALLELE"]
    record = next(r for r in pysam.VariantFile(str(out_vcf)) if r.id == "multi")
    assert record.info["GFSSM_LLR"][1:] == (None, None) and record.info["GFSSM_LLR"][0] != 0


def test_bad_vcf_records_name_the_file_and_line(task, loaded, tmp_path, lambda_text, lambda_name):
    path = tmp_path / "bad.vcf"
    path.write_text(
        HEADER
        + f"{lambda_name}\t100\t.\t{lambda_text[99]}\tC\t.\t.\t.\nchrZ\t5\t.\tA\tC\t.\t.\t.\n"
    )
    argv = f"--fasta {loaded.settings.fasta} --vcf bad.vcf --out o.vcf.gz".split()
    with pytest.raises(ContigNameError, match=r"bad.vcf line 4 \(record 2, chrZ:5\)"):
        make_job(task, "variants", argv, tmp_path, loaded)
    path.write_text(HEADER + f"{lambda_name}\tx\t.\tA\tC\t.\t.\t.\n")
    with pytest.raises(VcfFormatError, match=r"bad.vcf line 3 \(record 1\): cannot be parsed"):
        make_job(task, "variants", argv, tmp_path, loaded)
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 30)
    with pytest.raises(VcfFormatError, match=r"bad.vcf: zip-compressed"):
        make_job(task, "variants", argv, tmp_path, loaded)


# prepare() --------------------------------------------------------------------------------
def test_prepare_resolves_relative_paths_and_checks_inputs(
    task, tmp_path, monkeypatch, lambda_fasta
):
    work = tmp_path / "project"
    work.mkdir()
    shutil.copy(lambda_fasta, work / "g.fa")
    (work / "val.bed").write_text("gi|9626243|ref|NC_001416.1|\t40000\t48000\n")
    monkeypatch.chdir(tmp_path)
    raw = task.settings({"fasta": "g.fa", "val_bed": "val.bed", "window_length": 256})
    prepared = task.prepare(raw, work)
    assert prepared.fasta == str(work / "g.fa") and prepared.val_bed == str(work / "val.bed")
    batch = next(task.train_batches(prepared, seed=0, rank=0, world_size=1, batch_size=2))
    assert batch["input_ids"].shape == (2, 255)

    def fails(values, error, pattern):
        with pytest.raises(error, match=pattern):
            task.prepare(task.settings(values), work)

    fails(
        {"fasta": "missing.fa"}, TaskInputError, r"task.fasta missing.fa: no such file \(looked in"
    )
    fails({"fasta": "g.fa", "include_bed": "nope.bed"}, TaskInputError, "task.include_bed nope.bed")
    (work / "bad.bed").write_text("# ok\ngi|9626243|ref|NC_001416.1|\t10\tx\n")
    fails(
        {"fasta": "g.fa", "exclude_bed": "bad.bed"},
        BedFormatError,
        r"bad.bed line 2: start and end",
    )
    fails(
        {"fasta": "g.fa", "val_contigs": ["chr9"]}, ContigNameError, r"val_contigs: contig 'chr9'"
    )
    fails({"fasta": "g.fa", "window_length": 65536}, WindowError, "window_length=65,536")
    (work / "broken.fa").write_text(">a\nACGT\n>a\nAC\n")
    fails({"fasta": "broken.fa"}, FastaFormatError, r"broken.fa line 3: duplicate sequence name")


def test_prepare_reads_compressed_crlf_fasta_with_odd_names(task, tmp_path, lambda_text, caplog):
    """Windows line endings, '|' in names and a description after the name, plain gzip."""
    seq = lambda_text[:12000]
    body = "\r\n".join(seq[i : i + 70] for i in range(0, 12000, 70))
    text = f">gi|1|ref|X_1.1| lambda phage, left\r\n{body}\r\n>two words here\r\n{body}\r\n"
    (tmp_path / "odd.fa.gz").write_bytes(gzip.compress(text.encode()))
    settings = task.settings(
        {"fasta": "odd.fa.gz", "cache_dir": "cache", "window_length": 512, "markov_order": 2}
    )
    with caplog.at_level(logging.WARNING, logger="gfssm.tasks.dna"):
        prepared = task.prepare(settings, tmp_path)
    assert "gzip-compressed FASTA" in caplog.text and "converting it once" in caplog.text
    assert prepared.cache_dir == str(tmp_path / "cache")
    genome = task.data(prepared).genome
    assert genome.lengths == {"gi|1|ref|X_1.1|": 12000, "two": 12000}
    assert genome.fetch("two", 65, 75) == lambda_text[65:75]


# Data steps -------------------------------------------------------------------------------
def test_data_steps_resolve_paths_against_the_users_folder(task, tmp_path, data_dir, lambda_fasta):
    shutil.copy(data_dir / "chr22_20M_head.fa", tmp_path / "chr22.fa")
    shutil.copy(data_dir / "chr22_20M_head.snp", tmp_path / "chr22.snp")
    (tmp_path / "lam.fa.xz").write_bytes(lzma.compress(lambda_fasta.read_bytes()))
    lines = []

    def run(name, argv):
        args = parse(task, name, argv, group="data")
        return command(task, "data", name).run(args, tmp_path, lines.append)

    assert run("index", ["chr22.fa"]) == 0 and (tmp_path / "chr22.fa.fai").exists()
    assert run("snp2vcf", ["chr22.snp", "--fasta", "chr22.fa", "--out", "out/chr22.vcf"]) == 0
    assert len(list(pysam.VariantFile(str(tmp_path / "out" / "chr22.vcf")))) == 91
    assert run("bgzip", ["lam.fa.xz", "--out", "lam.fa.gz"]) == 0
    assert Genome(tmp_path / "lam.fa.gz").compression == "bgzip"
    assert run("genbank", [str(data_dir / "phiX174_NC_001422.gbk"), "--out", "gb/phix"]) == 0
    assert (tmp_path / "gb" / "phix.fa.gz").exists() and (
        tmp_path / "gb" / "phix.features.bed"
    ).exists()
    with pytest.raises(TaskInputError, match=r"FASTA nope\.fa: no such file"):
        run("index", ["nope.fa"])
    (tmp_path / "bad.snp").write_text("rs1\tsingle\tchr22\n")
    with pytest.raises(SnpFormatError, match=r"bad.snp line 1: expected 5 tab-separated"):
        run("snp2vcf", ["bad.snp", "--fasta", "chr22.fa", "--out", "x.vcf"])
