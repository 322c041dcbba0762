"""The one BED reader: names, header lines, CRLF, gzip, and errors naming file and line."""

from __future__ import annotations

import gzip

import pytest

from gfssm.tasks.dna import Genome
from gfssm.tasks.dna.regions import (
    BedFormatError,
    BedRecord,
    Interval,
    read_bed,
    read_bed_records,
)


def test_records_keep_names_across_formats(tmp_path, lambda_fasta, lambda_name):
    genome = Genome(lambda_fasta)
    text = (
        f"track name=x\r\nbrowser position a\r\n# comment\r\n\r\n"
        f"{lambda_name}\t0\t100\tgene A\t0\t+\r\n{lambda_name}\t5\t9\r\n"
        f"{lambda_name} 10 20 spaced\r\n"
    )
    expected = [
        BedRecord(Interval(lambda_name, 0, 100), "gene A"),
        BedRecord(Interval(lambda_name, 5, 9), ""),
        BedRecord(Interval(lambda_name, 10, 20), "spaced"),
    ]
    plain = tmp_path / "r.bed"
    plain.write_bytes(text.encode())
    packed = tmp_path / "r.bed.gz"
    packed.write_bytes(gzip.compress(text.encode()))
    for path in (plain, packed):
        assert read_bed_records(path, genome) == expected
        assert read_bed(path, genome) == [r.interval for r in expected]


@pytest.mark.parametrize(
    "line, expected",
    [
        ("{c}\t10\t10", "[10, 10) is empty or negative; expected 0 <= start < end"),
        ("{c}\t0\t48600", "[0, 48600) ends past the end of contig '{c}', which has 48,502 bases"),
        ("chrX\t1\t5", "contig 'chrX' is not in"),
    ],
)
def test_errors_name_what_the_caller_shows(tmp_path, lambda_fasta, lambda_name, line, expected):
    genome = Genome(lambda_fasta)
    path = tmp_path / "r.bed"
    path.write_text(f"# header\n{line.format(c=lambda_name)}\n")
    with pytest.raises(BedFormatError) as err:
        read_bed_records(path, genome, shown="--bed r.bed")
    assert str(err.value).startswith(f"--bed r.bed line 2: {expected.format(c=lambda_name)}")
