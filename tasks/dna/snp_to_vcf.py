"""Convert a HISAT2 ``.snp`` file (dbSNP variants of the HISAT2 examples) into a VCF.

A ``.snp`` line is ``id  type  chromosome  offset  data`` (tab-separated) where ``type`` is
``single``, ``deletion`` or ``insertion``, ``offset`` is 0-based and ``data`` is the ALT
base, the deletion length, or the inserted bases. REF comes from the FASTA. We read the
offsets as HISAT2's UCSC/dbSNP converter writes them: a deletion removes ``data`` bases
starting at ``offset``; an insertion puts its bases right before the base at ``offset``.
VCF indels are anchored on the base before (or, at offset 0, the base after).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from gfssm.tasks.dna.genome import ContigNameError, Genome
from gfssm.tasks.jobs import TaskInputError

SNP_TYPES = ("single", "deletion", "insertion")
_NUCLEOTIDES = set("ACGT")


class SnpFormatError(TaskInputError):
    """A ``.snp`` line is malformed; the message names file and line."""


@dataclass(frozen=True, order=True)
class VcfLine:
    contig_rank: int
    pos: int  # 1-based
    ref: str
    alt: str
    id: str
    contig: str


def snp_to_vcf_lines(snp: Path, genome: Genome) -> tuple[list[VcfLine], list[str]]:
    """VCF lines of ``snp`` (sorted) and the problems of lines that were left out (REF/ALT
    identical, bases not A/C/G/T, positions outside the contig)."""
    rank = {c: i for i, c in enumerate(genome.contigs)}
    out: list[VcfLine] = []
    problems: list[str] = []
    with open(snp) as handle:
        for line_no, raw in enumerate(handle, start=1):
            text = raw.rstrip("\r\n")
            if not text or text.startswith("#"):
                continue
            where = f"{snp} line {line_no}"
            fields = text.split("\t")
            if len(fields) != 5 or fields[1] not in SNP_TYPES:
                raise SnpFormatError(
                    f"{where}: expected 5 tab-separated fields 'id type chromosome offset data' "
                    f"with type one of {SNP_TYPES}, got {text[:80]!r}"
                )
            var_id, kind, chrom, offset_text, data = fields
            try:
                contig = genome.resolve(chrom, where=where)
            except ContigNameError as err:
                raise SnpFormatError(str(err)) from err
            if not offset_text.isdigit():
                raise SnpFormatError(f"{where}: offset {offset_text!r} is not a 0-based integer")
            offset, length = int(offset_text), genome.lengths[contig]
            made = _vcf_line(genome, contig, kind, offset, data, length, var_id, where)
            if isinstance(made, str):
                problems.append(made)
            else:
                pos, ref, alt = made
                out.append(VcfLine(rank[contig], pos, ref, alt, var_id, contig))
    return sorted(out), problems


def _vcf_line(genome, contig, kind, offset, data, length, var_id, where):
    """(pos, ref, alt) or a problem description."""

    def fetch(a: int, b: int) -> str:
        return genome.fetch(contig, a, b).upper()

    if kind == "single":
        if offset >= length:
            return f"{where}: {var_id} offset {offset} is past the contig end ({length})"
        ref, alt = fetch(offset, offset + 1), data.upper()
        if alt == ref or alt not in _NUCLEOTIDES:
            return f"{where}: {var_id} ALT {data!r} equals REF {ref!r} or is not A/C/G/T"
        return offset + 1, ref, alt
    if kind == "deletion":
        if not data.isdigit() or int(data) < 1:
            raise SnpFormatError(f"{where}: deletion length {data!r} is not a positive integer")
        n = int(data)
        if offset + n > length or (offset == 0 and n >= length):
            return f"{where}: {var_id} deletion of {n} at {offset} passes the contig end"
        if offset > 0:
            return offset, fetch(offset - 1, offset + n), fetch(offset - 1, offset)
        return 1, fetch(0, n + 1), fetch(n, n + 1)
    inserted = data.upper()
    if not inserted or set(inserted) - _NUCLEOTIDES:
        return f"{where}: {var_id} inserted bases {data!r} are not A/C/G/T"
    if offset > length:
        return f"{where}: {var_id} insertion at {offset} is past the contig end ({length})"
    if offset > 0:
        anchor = fetch(offset - 1, offset)
        return offset, anchor, anchor + inserted
    anchor = fetch(0, 1)
    return 1, anchor, inserted + anchor


def write_vcf(lines: list[VcfLine], genome: Genome, path: Path, *, source: str) -> Path:
    """Write a VCF 4.2 (plain text) with a ##contig line per contig of ``genome``."""
    partial = Path(f"{path}.partial")
    with open(partial, "w") as out:
        out.write("##fileformat=VCFv4.2\n")
        out.write(f"##source={source}\n")
        out.write(f"##reference={genome.path.name}\n")
        for contig, length in genome.lengths.items():
            out.write(f"##contig=<ID={contig},length={length}>\n")
        out.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        for v in lines:
            out.write(f"{v.contig}\t{v.pos}\t{v.id}\t{v.ref}\t{v.alt}\t.\t.\t.\n")
    os.replace(partial, path)
    return path
