"""Variants read from a VCF and turned into reference and alternative haplotype windows.

Every record of the VCF becomes a :class:`VariantRecord` (plain data, picklable for
parallel workers): either with one pair of windows per ALT allele, or with the reason it
is skipped. Records are never dropped silently: a REF that does not match the FASTA, a
position outside the contig or a symbolic allele is reported and skipped.
"""

from __future__ import annotations

import gzip
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pysam

from gfssm.tasks.dna.genome import ContigNameError, Genome

log = logging.getLogger(__name__)

REF_MISMATCH = "REF_MISMATCH"
OUTSIDE_CONTIG = "OUTSIDE_CONTIG"
UNSUPPORTED_ALLELE = "UNSUPPORTED_ALLELE"
SKIP_REASONS = {
    REF_MISMATCH: "REF differs from the FASTA at this position",
    OUTSIDE_CONTIG: "the variant reaches past the end of its contig",
    UNSUPPORTED_ALLELE: "symbolic, missing or non-nucleotide ALT (e.g. <DEL>, *, .)",
}
_BASES = re.compile(r"^[ACGTNRYSWKMBDHV]+$", re.IGNORECASE)


class VcfFormatError(ValueError):
    """The VCF cannot be read; the message names file and line."""


@dataclass(frozen=True)
class Haplotypes:
    """Reference and alternative windows of one ALT allele, as text."""

    alt: str
    ref_window: str
    alt_window: str


@dataclass
class VariantRecord:
    """One VCF record: where it is, what it says, and its windows or why it is skipped."""

    number: int  # 1-based index among the data records
    line: int  # 1-based line in a plain-text VCF
    chrom: str
    pos: int  # 1-based, as in the VCF
    id: str | None
    ref: str
    alts: tuple[str, ...]
    contig: str | None = None  # the FASTA's name for chrom
    alleles: list[Haplotypes] = field(default_factory=list)
    skip: str | None = None
    detail: str = ""


def open_vcf(path: str | Path) -> pysam.VariantFile:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such VCF file")
    try:
        return pysam.VariantFile(str(path))
    except (ValueError, OSError) as err:
        raise VcfFormatError(f"{path}: not a readable VCF/BCF file ({err})") from err


def check_contigs(vcf: pysam.VariantFile, genome: Genome, path: Path) -> None:
    """Fail early when the VCF header's contigs all miss the FASTA but look like its names
    under another spelling (``NC_007795`` vs ``gi|...|ref|NC_007795.1|``)."""
    declared = [str(c) for c in vcf.header.contigs]
    if not declared or any(_known(genome, c) for c in declared):
        return
    for name in declared:
        try:
            genome.resolve(name, where=f"{path} header ##contig=<ID={name}>")
        except ContigNameError as err:
            if "looks like the same sequence" in str(err):
                raise


def _header_line_count(path: Path) -> int:
    """Lines before the first record of a text VCF (plain or bgzip); 0 for BCF."""
    with open(path, "rb") as raw:
        magic = raw.read(2)
    opener = gzip.open if magic == b"\x1f\x8b" else open
    count = 0
    try:
        with opener(path, "rb") as handle:
            for line in handle:
                if not line.startswith(b"#"):
                    break
                count += 1
    except (OSError, EOFError):
        return 0
    return count


def _known(genome: Genome, name: str) -> bool:
    return name in genome.lengths or name in genome.aliases


def read_variants(path: str | Path, genome: Genome, *, flank: int) -> Iterator[VariantRecord]:
    """Every record of the VCF at ``path`` with windows of ``flank`` bases on each side."""
    path = Path(path)
    vcf = open_vcf(path)
    check_contigs(vcf, genome, path)
    header_lines = _header_line_count(path)
    number = 0
    try:
        for number, rec in enumerate(vcf, start=1):
            yield _variant(rec, number, header_lines + number, genome, flank, path)
    except (ValueError, OSError) as err:
        if isinstance(err, ContigNameError):
            raise
        raise VcfFormatError(
            f"{path} line {header_lines + number + 1} (record {number + 1}): cannot be parsed "
            f"({err}); expected tab-separated CHROM POS ID REF ALT ..."
        ) from err
    finally:
        vcf.close()


def _variant(rec, number: int, line: int, genome: Genome, flank: int, path: Path):
    ref = (rec.ref or "").upper()
    record = VariantRecord(
        number=number,
        line=line,
        chrom=rec.chrom,
        pos=rec.pos,
        id=rec.id,
        ref=ref,
        alts=tuple(rec.alts or ()),
    )
    where = f"{path} line {line} (record {number}, {rec.chrom}:{rec.pos})"
    record.contig = genome.resolve(rec.chrom, where=where)
    length = genome.lengths[record.contig]
    start, end = rec.pos - 1, rec.pos - 1 + len(ref)
    if not ref or end > length:
        record.skip, record.detail = (
            OUTSIDE_CONTIG,
            f"{rec.chrom}:{rec.pos} REF {ref!r}, contig length {length}",
        )
        return record
    actual = genome.fetch(record.contig, start, end).upper()
    if actual != ref:
        record.skip = REF_MISMATCH
        record.detail = f"VCF REF {ref!r}, FASTA has {actual!r}"
        log.warning("%s: REF mismatch (%s), skipped", where, record.detail)
        return record
    if not record.alts or not all(_BASES.match(a) for a in record.alts):
        record.skip, record.detail = UNSUPPORTED_ALLELE, f"ALT {','.join(record.alts) or '.'}"
        return record
    left = genome.fetch(record.contig, max(0, start - flank), start)
    right = genome.fetch(record.contig, end, min(length, end + flank))
    record.alleles = [
        Haplotypes(
            alt=a.upper(), ref_window=left + ref + right, alt_window=left + a.upper() + right
        )
        for a in record.alts
    ]
    return record
