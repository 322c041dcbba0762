"""Variants read from a VCF and turned into reference and alternative haplotype windows.

Every record of the VCF becomes a :class:`VariantRecord` (plain data, picklable for
parallel workers): either with one pair of windows per scorable ALT allele, or with the
reason it is skipped. Records are never dropped silently: a REF that does not match the
FASTA or a position outside the contig is reported and skipped; a symbolic (``<DEL>``),
``*`` or missing ALT is left unscored (the other ALTs of its record are scored) and counted.

VCFs come as users have them: plain text, bgzip, BCF, or plain gzip/bzip2/xz/zstd (converted
once into a bgzip copy in the cache, since htslib cannot read those), with or without
``##contig`` header lines; htslib's console warnings are silenced while reading.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pysam

from gfssm.tasks.dna.fasta_format import BGZIP, CONVERTIBLE, PLAIN, convert_to_bgzip
from gfssm.tasks.dna.fasta_format import detect_compression as _compression
from gfssm.tasks.dna.genome import ContigNameError, Genome, MissingFileError, default_cache_dir
from gfssm.tasks.jobs import TaskInputError

log = logging.getLogger(__name__)

REF_MISMATCH = "REF_MISMATCH"
OUTSIDE_CONTIG = "OUTSIDE_CONTIG"
UNSUPPORTED_ALLELE = "UNSUPPORTED_ALLELE"
SKIP_REASONS = {
    REF_MISMATCH: "REF differs from the FASTA at this position",
    OUTSIDE_CONTIG: "the variant reaches past the end of its contig",
    UNSUPPORTED_ALLELE: "symbolic, missing or non-nucleotide ALT (e.g. <DEL>, *, .)",
    "NOT_SCORED": "no score was produced for this record",
}
MISMATCH_WARNINGS = 5  # REF mismatches reported one by one; the rest are only counted
_BASES = re.compile(r"^[ACGTNRYSWKMBDHV]+$", re.IGNORECASE)


class VcfFormatError(TaskInputError):
    """The VCF cannot be read; the message names file and line."""


@dataclass(frozen=True)
class Haplotypes:
    """Reference and alternative windows of one ALT allele, as text; ``index`` is the
    allele's place among the record's ALTs (0-based)."""

    alt: str
    ref_window: str
    alt_window: str
    index: int = 0


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


@contextlib.contextmanager
def quiet_htslib() -> Iterator[None]:
    """htslib's console warnings off (e.g. "Contig ... is not defined in the header", which
    a VCF without ##contig lines triggers on every record and which needs no action)."""
    before = pysam.set_verbosity(0)
    try:
        yield
    finally:
        pysam.set_verbosity(before)


def readable_vcf(path: str | Path, cache_dir: str | Path | None = None) -> Path:
    """A path htslib can read for the VCF/BCF at ``path``: itself when plain text, bgzip or
    BCF; else (gzip, bzip2, xz, zstd) a bgzip copy made once in ``cache_dir``, with a
    one-line notice."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise MissingFileError(f"{path}: is a folder; expected a VCF/BCF file")
    if not path.is_file():
        raise MissingFileError(f"{path}: no such VCF file")
    compression = _compression(path)
    if compression in (PLAIN, BGZIP):
        return path
    if compression not in CONVERTIBLE:
        raise VcfFormatError(
            f"{path}: {compression}-compressed; expected a VCF (plain, bgzip, gzip, bzip2, xz "
            f"or zstd) or a BCF"
        )
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    return convert_to_bgzip(path, cache, compression, kind="VCF", suffix=".vcf.gz")


def is_bcf(path: str | Path) -> bool:
    """True for a BCF (binary) file, compressed or not."""
    with open(path, "rb") as raw:
        magic = raw.read(2)
    try:
        with gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb") as handle:
            return handle.read(3) == b"BCF"
    except (OSError, EOFError):
        return False


def open_vcf(path: str | Path, *, shown: str | Path | None = None) -> pysam.VariantFile:
    """``path`` (a readable VCF/BCF, see :func:`readable_vcf`) opened with htslib; errors
    name ``shown`` (the user's file), default ``path``."""
    path = Path(path)
    shown = shown or path
    if not path.is_file():
        raise MissingFileError(f"{shown}: no such VCF file")
    try:
        with quiet_htslib():
            return pysam.VariantFile(str(path))
    except (ValueError, OSError, NotImplementedError) as err:
        raise VcfFormatError(
            f"{shown}: not a readable VCF/BCF file ({err}); expected a VCF (plain text or "
            f"compressed) or a BCF"
        ) from err


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
    if is_bcf(path):
        return 0
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
    """Every record of the VCF/BCF at ``path`` (any compression, see :func:`readable_vcf`)
    with windows of ``flank`` bases on each side."""
    path = Path(path).expanduser()
    source = readable_vcf(path, genome.cache_dir)
    vcf = open_vcf(source, shown=path)
    bcf = is_bcf(source)
    check_contigs(vcf, genome, path)
    header_lines = _header_line_count(source)
    number = mismatches = 0
    before = pysam.set_verbosity(0)
    try:
        for number, rec in enumerate(vcf, start=1):
            record = _variant(rec, number, 0 if bcf else header_lines + number, genome, flank, path)
            if record.skip == REF_MISMATCH:
                mismatches += 1
                if mismatches <= MISMATCH_WARNINGS:
                    log.warning("REF mismatch, record skipped: %s", record.detail)
                if mismatches == MISMATCH_WARNINGS + 1:
                    log.warning("%s: more REF mismatches; all are counted in the summary", path)
            yield record
    except (ValueError, OSError) as err:
        if isinstance(err, TaskInputError):
            raise
        where = (
            f"record {number + 1}"
            if bcf
            else (f"line {header_lines + number + 1} (record {number + 1})")
        )
        raise VcfFormatError(
            f"{path} {where}: cannot be parsed ({err}); expected tab-separated CHROM POS ID "
            f"REF ALT ..."
        ) from err
    finally:
        pysam.set_verbosity(before)
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
    place = f"line {line} (record {number}" if line else f"(record {number}"
    where = f"{path} {place}, {rec.chrom}:{rec.pos})"
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
        record.detail = f"{where}: VCF REF {ref!r}, FASTA has {actual!r}"
        return record
    usable = [(i, a.upper()) for i, a in enumerate(record.alts) if _BASES.match(a)]
    if not usable:
        record.skip, record.detail = UNSUPPORTED_ALLELE, f"ALT {','.join(record.alts) or '.'}"
        return record
    if len(usable) < len(record.alts):
        kept = {i for i, _ in usable}
        others = [a for i, a in enumerate(record.alts) if i not in kept]
        record.detail = f"ALT {','.join(others)} not scored (symbolic, * or not bases)"
    left = genome.fetch(record.contig, max(0, start - flank), start)
    right = genome.fetch(record.contig, end, min(length, end + flank))
    record.alleles = [
        Haplotypes(alt=a, ref_window=left + ref + right, alt_window=left + a + right, index=i)
        for i, a in usable
    ]
    return record
