"""CDS of a GFF3 file against a FASTA: the ``CDS`` lines of one transcript are one CDS.

Lines are grouped by their ``Parent`` (else ``ID``; else each line stands alone), ordered
in reading order (by start on the + strand, by end descending on the - strand), and the
phase of the first part says how many bases come before the first whole codon. A
``transl_table`` attribute sets the genetic code, else ``table``. Reading stops at
``##FASTA`` (the sequence comes from the FASTA given beside the GFF).
"""

from __future__ import annotations

import gzip
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote

from gfssm.tasks.dna.genome import Genome
from gfssm.tasks.dna.vep.cds import NO_STRAND, Cds, CdsSet
from gfssm.tasks.jobs import TaskInputError

LABEL_KEYS = ("Name", "gene", "locus_tag", "Parent", "ID")


def _attributes(text: str) -> dict[str, str]:
    out = {}
    for item in text.strip().strip(";").split(";"):
        key, sep, value = item.strip().partition("=")
        if sep:
            out[key] = unquote(value)
    return out


def _lines(path: Path) -> Iterable[tuple[int, str]]:
    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
    with gzip.open(path, "rt") if gz else open(path) as handle:
        for number, line in enumerate(handle, start=1):
            if line.startswith("##FASTA"):
                return
            if line.strip() and not line.startswith("#"):
                yield number, line.rstrip("\n\r")


def read_gff_cds(
    path: Path, genome: Genome, contigs: Iterable[str] | None = None, table: int | None = None
) -> CdsSet:
    """CDS of the GFF3 ``path`` whose sequence is in ``genome``; only those on ``contigs``
    when given. A malformed line is an error naming its number."""
    wanted = set(contigs) if contigs is not None else None
    groups: dict[tuple[str, str], list[tuple[int, int, str, int, dict[str, str]]]] = defaultdict(
        list
    )
    out = CdsSet(path, contigs=list(genome.lengths))
    for number, line in _lines(path):
        fields = line.split("\t")
        if len(fields) != 9:
            raise TaskInputError(
                f"{path} line {number}: {len(fields)} tab-separated fields; expected 9 (GFF3)"
            )
        if fields[2] != "CDS":
            continue
        out.in_file += 1
        contig = genome.resolve(fields[0], where=f"{path} line {number}")
        try:
            start, end = int(fields[3]) - 1, int(fields[4])
            phase = int(fields[7])
        except ValueError:
            raise TaskInputError(
                f"{path} line {number}: start, end and phase of a CDS must be numbers "
                f"(got {fields[3]!r}, {fields[4]!r}, {fields[7]!r})"
            ) from None
        if not 0 <= start < end <= genome.lengths[contig] or phase not in (0, 1, 2):
            raise TaskInputError(
                f"{path} line {number}: CDS {fields[3]}..{fields[4]} phase {fields[7]} is "
                f"outside {contig} (1..{genome.lengths[contig]}) or has a phase other than 0-2"
            )
        if wanted is not None and contig not in wanted:
            continue
        attrs = _attributes(fields[8])
        key = attrs.get("Parent") or attrs.get("ID") or f"line{number}"
        strand = {"+": 1, "-": -1}.get(fields[6], 0)
        groups[(contig, key)].append((start, end, fields[6], strand, {**attrs, "phase": fields[7]}))
    texts: dict[str, str] = {}
    for (contig, key), parts in groups.items():
        strands = {p[3] for p in parts}
        if len(strands) != 1 or 0 in strands:
            out.total += 1
            out.skipped[NO_STRAND] += 1
            continue
        strand = strands.pop()
        parts.sort(key=lambda p: p[0] if strand > 0 else -p[1])
        attrs = parts[0][4]
        label = next((attrs[k] for k in LABEL_KEYS if attrs.get(k)), key)
        code = table or int(attrs.get("transl_table", "1"))
        phase = int(attrs["phase"])
        if contig not in texts:
            texts = {contig: genome.fetch(contig, 0, genome.lengths[contig])}
        item = Cds(
            contig=contig,
            gene=label,
            parts=tuple((p[0], p[1], strand) for p in parts),
            offset=phase,
            table=code,
            complete_start=phase == 0,
        )
        out.check(item, texts[contig], pseudo=attrs.get("pseudo") == "true")
    return out
