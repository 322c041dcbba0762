"""Bad input gets a message naming the file, record or line and what was expected, and
work already written is kept. (VCF/FASTA contig mismatch and REF mismatch are in
test_variants.py.)"""

import bz2
import gzip
import logging
import lzma
import shutil
import subprocess

import pysam
import pytest

from gfssm import GFSSMForCausalLM
from gfssm.tasks import get_task
from gfssm.tasks.dna import Genome
from gfssm.tasks.dna.fasta_format import FastaFormatError, UnsupportedCompressionError
from gfssm.tasks.dna.regions import BedFormatError, read_bed
from gfssm.tasks.dna.scoring import ScoringOptions, ShardStore, plan_scoring, score_genome
from gfssm.tasks.dna.tokens import InvalidBaseError
from gfssm.tasks.dna.variants import score_vcf
from gfssm.tasks.dna.windows import WindowError


def fasta(tmp_path, text: str, name="bad.fa"):
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


@pytest.mark.parametrize(
    "text, expected",
    [
        ("ACGT\n>a\nACGT\n", r"bad.fa line 1: expected a FASTA header starting with '>'"),
        (">a\nACGT\n>b\n>c\nAC\n", r"bad.fa line 3: record 'b' is empty"),
        (">a\nACGT\n", None),
        (
            ">a\nACGT\n>b\nGG\n>a\nTT\n",
            r"bad.fa line 5: duplicate sequence name 'a' \(first at line 1\)",
        ),
        (">a\nACGTACGT\nACG\nACGTACGT\n", r"bad.fa line 3: record 'a' has lines of 8 bases"),
        (">a\nACGT\nACJT\n", r"bad.fa line 3: contig 'a' position 7 \(1-based\): character 'J'"),
        ("", r"bad.fa: no FASTA records"),
        (">\nACGT\n", r"bad.fa line 1: header '>' without a name"),
    ],
)
def test_malformed_fasta_names_file_and_line(tmp_path, text, expected):
    path = fasta(tmp_path, text)
    if expected is None:
        assert Genome(path).lengths == {"a": 4}
        return
    with pytest.raises(FastaFormatError, match=expected):
        Genome(path)
    assert not (tmp_path / "bad.fa.fai").exists()


def test_windows_line_endings_are_accepted(tmp_path, lambda_text):
    body = "\r\n".join(lambda_text[i : i + 60] for i in range(0, 600, 60))
    path = fasta(tmp_path, ">crlf test\r\n" + body + "\r\n>b\r\nACGT\r\n")
    genome = Genome(path)
    assert genome.lengths == {"crlf": 600, "b": 4}
    assert genome.fetch("crlf", 55, 125) == lambda_text[55:125]
    assert genome.fetch("b", 0, 4) == "ACGT"


def zstd_compress(data: bytes) -> bytes:
    try:
        import zstandard
    except ImportError:
        if shutil.which("zstd") is None:
            pytest.skip("neither zstandard nor the zstd program is installed")
        return subprocess.run(["zstd", "-c"], input=data, capture_output=True, check=True).stdout
    return zstandard.ZstdCompressor().compress(data)


@pytest.mark.parametrize(
    "compress, kind",
    [(gzip.compress, "gzip"), (lzma.compress, "xz"), (bz2.compress, "bzip2"), (None, "zstd")],
)
def test_compressed_fasta_is_converted_once_with_a_notice(
    tmp_path, lambda_fasta, lambda_name, compress, kind, caplog
):
    packed = tmp_path / f"lambda.fa.{kind}"
    packed.write_bytes((compress or zstd_compress)(lambda_fasta.read_bytes()))
    with caplog.at_level(logging.WARNING, logger="gfssm.tasks.dna"):
        genome = Genome(packed, cache_dir=tmp_path / "cache")
    assert genome.path.parent == tmp_path / "cache" and genome.compression == "bgzip"
    assert genome.fetch(lambda_name, 0, 30) == Genome(lambda_fasta).fetch(lambda_name, 0, 30)
    (notice,) = [r.getMessage() for r in caplog.records]
    assert str(packed) in notice and f"{kind}-compressed" in notice and "once" in notice
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gfssm.tasks.dna"):
        again = Genome(packed, cache_dir=tmp_path / "cache")
    assert again.path == genome.path and not caplog.records  # reused, no second notice
    with pytest.raises(UnsupportedCompressionError) as err:
        Genome(packed, convert_compressed=False, cache_dir=tmp_path / "cache")
    message = str(err.value)
    assert str(packed) in message and f"{kind}-compressed" in message and "bgzip" in message


def test_zip_and_damaged_files_name_the_file(tmp_path, lambda_fasta):
    path = tmp_path / "x.zip"
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    with pytest.raises(UnsupportedCompressionError, match=f"{path}: zip-compressed"):
        Genome(path, cache_dir=tmp_path / "cache")
    truncated = tmp_path / "t.fa.gz"
    truncated.write_bytes(gzip.compress(lambda_fasta.read_bytes())[:5000])
    with pytest.raises(UnsupportedCompressionError, match=f"{truncated}: the gzip data is"):
        Genome(truncated, cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*.partial"))


def test_window_longer_than_every_contig(lambda_fasta):
    task = get_task("dna")
    s = task.settings({"fasta": str(lambda_fasta), "window_length": 65536})
    with pytest.raises(WindowError) as err:
        next(task.train_batches(s, seed=0, rank=0, world_size=1, batch_size=1))
    message = str(err.value)
    assert str(lambda_fasta) in message and "window_length=65,536" in message
    assert "48,502 bp" in message or "46,076 bp" in message  # the longest training region


def test_all_n_regions(tmp_path, lambda_text):
    path = fasta(tmp_path, ">gap\n" + "N" * 5000 + "\n>tiny\n" + lambda_text[:300] + "\n")
    task = get_task("dna")
    s = task.settings({"fasta": str(path), "window_length": 1000})
    with pytest.raises(WindowError, match=r"5,000 of 5,300 bases are in N runs"):
        next(task.train_batches(s, seed=0, rank=0, world_size=1, batch_size=1))


def test_bad_bed_lines(tmp_path, lambda_fasta, lambda_name):
    genome = Genome(lambda_fasta)
    cases = {
        "a\t1\n": "line 1: expected 3\\+ columns",
        f"{lambda_name}\tx\t10\n": "line 1: start and end must be integers",
        f"#c\n{lambda_name}\t10\t99999\n": "line 2: \\[10, 99999\\) ends past the end of contig",
        "NC_001416\t1\t5\n": "line 1: contig 'NC_001416' is not in .*contig_aliases",
    }
    for i, (text, expected) in enumerate(cases.items()):
        bed = tmp_path / f"r{i}.bed"
        bed.write_text(text)
        with pytest.raises(BedFormatError, match=f"{bed}.*{expected}" if i < 3 else expected):
            read_bed(bed, genome)


def test_invalid_base_found_while_scoring_keeps_finished_shards(
    tmp_path, lambda_text, tiny_config, seeded
):
    path = fasta(tmp_path, f">a\n{lambda_text[:900]}\n>b\n{lambda_text[:400]}X{lambda_text[:99]}\n")
    pysam.faidx(str(path))  # an index made elsewhere: our scan never saw the file
    genome = Genome(path)
    model = GFSSMForCausalLM(tiny_config)
    prefix = tmp_path / "out"
    # One stream per batch: items are scored in groups, and a group with bad input is
    # lost whole; the groups before it must be kept.
    options = ScoringOptions(256, batch_streams=1)
    with pytest.raises(InvalidBaseError, match=r"contig 'b' position 401 \(1-based\)"):
        score_genome(model, genome, prefix, options=options, progress=False)
    plan = plan_scoring(genome)
    store = ShardStore(f"{prefix}.shards")
    assert store.is_done(plan[0]) and not store.is_done(plan[1])


def test_failed_vcf_run_keeps_earlier_outputs(
    tmp_path, lambda_fasta, lambda_text, lambda_name, tiny_config, seeded
):
    genome = Genome(lambda_fasta)
    model = GFSSMForCausalLM(tiny_config).eval()
    good = tmp_path / "good.vcf"
    rows = [f"{lambda_name}\t{p}\t.\t{lambda_text[p - 1]}\tA\t.\t.\t." for p in (500, 600)]
    header = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    good.write_text(header + "\n".join(rows) + "\n")
    out = score_vcf(model, genome, good, tmp_path / "res", flank=20, progress=False)
    before = out.vcf.read_bytes(), out.table.read_bytes()
    broken = tmp_path / "broken.vcf"
    broken.write_text(header + rows[0] + "\nNC_001416\t700\t.\tA\tC\t.\t.\t.\n")
    with pytest.raises(KeyError, match=r"broken.vcf line 4 \(record 2"):
        score_vcf(model, genome, broken, tmp_path / "res", flank=20, batch_size=1, progress=False)
    assert (out.vcf.read_bytes(), out.table.read_bytes()) == before


def test_genbank_without_sequence(tmp_path, data_dir):
    text = (data_dir / "phiX174_NC_001422.gbk").read_text()
    no_seq = text[: text.index("ORIGIN")] + "//\n"
    path = tmp_path / "noseq.gbk"
    path.write_text(no_seq)
    with pytest.raises(
        FastaFormatError, match=r"noseq.gbk record 1 \(NC_001422.1\): has no sequence"
    ):
        Genome(path, cache_dir=tmp_path / "cache")
    shutil.rmtree(tmp_path / "cache")
