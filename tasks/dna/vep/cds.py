"""Coding sequences of an annotation: GenBank ``CDS`` features or GFF3 ``CDS`` lines.

A :class:`Cds` is the list of its genomic parts in reading order, the bases to drop before
the first whole codon (``codon_start - 1`` or the GFF phase) and its genetic code. CDS that
cannot be labelled codon by codon are left out and counted by reason (:class:`CdsSet`): a
length that is not whole codons, a base other than A/C/G/T, an internal stop codon, a
``/pseudo`` feature, an unstranded part.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from Bio.Data import CodonTable

from gfssm.tasks.jobs import TaskInputError

PARTIAL_CODONS = "partial codons (length not a multiple of 3)"
AMBIGUOUS = "ambiguous bases (not A/C/G/T)"
INTERNAL_STOP = "internal stop codons"
PSEUDO = "pseudo (/pseudo or /pseudogene)"
NO_STRAND = "no strand"
BAD_TABLE = "unknown genetic code"
COMPLEMENT = str.maketrans("ACGT", "TGCA")


@dataclass(frozen=True)
class Cds:
    """One coding sequence: ``parts`` are ``(start, end, strand)`` (0-based, end
    exclusive, strand +1/-1) in reading order; the first ``offset`` bases come before the
    first whole codon; ``complete_start``: the first codon is the annotated start codon
    (no 5' truncation, ``codon_start`` 1)."""

    contig: str
    gene: str
    parts: tuple[tuple[int, int, int], ...]
    offset: int = 0
    table: int = 1
    complete_start: bool = True

    @property
    def strand(self) -> int:
        return self.parts[0][2]

    def positions(self) -> np.ndarray:
        """Genomic positions of the coding bases, in reading order (``offset`` dropped)."""
        pieces = [
            np.arange(start, end) if strand > 0 else np.arange(end - 1, start - 1, -1)
            for start, end, strand in self.parts
        ]
        return np.concatenate(pieces)[self.offset :].astype(np.int64)

    def coding_text(self, contig_text: str) -> str:
        """The coding bases (uppercase, on the CDS's strand) from the contig's sequence."""
        out = []
        for start, end, strand in self.parts:
            piece = contig_text[start:end].upper()
            out.append(piece if strand > 0 else piece.translate(COMPLEMENT)[::-1])
        return "".join(out)[self.offset :]

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "parts": [list(p) for p in self.parts]}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Cds:
        return cls(**{**values, "parts": tuple(tuple(p) for p in values["parts"])})


@dataclass
class CdsSet:
    """The usable CDS of an annotation, and how many were left out, by reason."""

    source: Path
    cds: list[Cds] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    #: CDS on the contigs read, and in the whole file
    total: int = 0
    in_file: int = 0
    #: every contig of the file, in file order
    contigs: list[str] = field(default_factory=list)

    def check(self, item: Cds, contig_text: str, pseudo: bool = False) -> None:
        """Keep ``item`` unless it cannot be labelled codon by codon (then count why)."""
        self.total += 1
        text = item.coding_text(contig_text)
        reason = None
        if pseudo:
            reason = PSEUDO
        elif item.table not in CodonTable.unambiguous_dna_by_id:
            reason = BAD_TABLE
        elif not text or len(text) % 3:
            reason = PARTIAL_CODONS
        elif re.search("[^ACGT]", text):
            reason = AMBIGUOUS
        else:
            stops = CodonTable.unambiguous_dna_by_id[item.table].stop_codons
            if any(text[i : i + 3] in stops for i in range(0, len(text) - 3, 3)):
                reason = INTERNAL_STOP
        if reason:
            self.skipped[reason] += 1
        else:
            self.cds.append(item)

    def skipped_line(self) -> str | None:
        """One line on what was left out, or None."""
        if not self.skipped:
            return None
        reasons = ", ".join(f"{n} with {r}" for r, n in self.skipped.most_common())
        return (
            f"{self.source.name}: {sum(self.skipped.values())} of {self.total} CDS skipped "
            f"({reasons}); {len(self.cds)} kept"
        )

    def require_usable(self, contigs: Iterable[str] | None = None) -> None:
        """Errors (one line) when there is nothing to evaluate."""
        if self.in_file == 0:
            raise TaskInputError(
                f"{self.source}: no CDS features; expected an annotation with coding "
                f"sequences (GenBank CDS features or GFF3 lines of type CDS)"
            )
        if self.total == 0:
            names = ", ".join(contigs or [])
            raise TaskInputError(
                f"{self.source}: none of its {self.in_file} CDS lies on the contigs to "
                f"evaluate ({names})"
            )
        if not self.cds:
            raise TaskInputError(f"{self.skipped_line()}: no CDS left to evaluate")


def _five_prime_partial(location: Any, strand: int) -> bool:
    from Bio.SeqFeature import AfterPosition, BeforePosition

    first = location.parts[0]
    if strand > 0:
        return isinstance(first.start, BeforePosition)
    return isinstance(first.end, AfterPosition)


def read_genbank_cds(
    path: Path, contigs: Iterable[str] | None = None, table: int | None = None
) -> CdsSet:
    """CDS of a GenBank file (plain, gzip or xz), records named as ``Genome`` names them;
    only those on ``contigs`` when given; ``table`` overrides ``/transl_table``."""
    from Bio import SeqIO

    from gfssm.tasks.dna.genbank import _open_text

    wanted = set(contigs) if contigs is not None else None
    out = CdsSet(path)
    with _open_text(path) as handle:
        try:
            for record in SeqIO.parse(handle, "genbank"):
                name = record.id if record.id and record.id != "<unknown id>" else record.name
                out.contigs.append(name)
                features = [f for f in record.features if f.type == "CDS"]
                out.in_file += len(features)
                if not features or (wanted is not None and name not in wanted):
                    continue
                text = str(record.seq)
                for number, feature in enumerate(features, start=1):
                    item, pseudo = _genbank_cds(name, number, feature, table)
                    if item is None:
                        out.total += 1
                        out.skipped[NO_STRAND] += 1
                    else:
                        out.check(item, text, pseudo)
        except ValueError as err:
            raise TaskInputError(f"{path}: not a valid GenBank file ({err})") from None
    return out


def _genbank_cds(
    contig: str, number: int, feature: Any, table: int | None
) -> tuple[Cds | None, bool]:
    """The CDS of a feature (None when a part has no strand) and whether it is pseudo."""
    q = feature.qualifiers
    label = next((q[k][0] for k in ("gene", "locus_tag", "protein_id") if q.get(k)), f"CDS{number}")
    parts = tuple((int(p.start), int(p.end), int(p.strand or 0)) for p in feature.location.parts)
    strand = parts[0][2]
    pseudo = "pseudo" in q or "pseudogene" in q
    if strand not in (1, -1) or any(p[2] != strand for p in parts):
        return None, pseudo
    codon_start = int(q.get("codon_start", ["1"])[0])
    return (
        Cds(
            contig=contig,
            gene=label,
            parts=parts,
            offset=codon_start - 1,
            table=table or int(q.get("transl_table", ["1"])[0]),
            complete_start=codon_start == 1 and not _five_prime_partial(feature.location, strand),
        ),
        pseudo,
    )
