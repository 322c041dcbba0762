"""Genomic intervals: BED input, include/exclude, and the train/validation split.

Intervals are 0-based and half-open, ``[start, end)``, as in BED.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gfssm.tasks.dna.genome import ContigNameError, Genome, MissingFileError
from gfssm.tasks.jobs import TaskInputError


class BedFormatError(TaskInputError):
    """A BED file is malformed; the message names the file and line."""


@dataclass(frozen=True, order=True)
class Interval:
    contig: str
    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start

    def __str__(self) -> str:
        return f"{self.contig}:{self.start + 1}-{self.end}"


@dataclass(frozen=True)
class BedRecord:
    """One line of a BED file: its interval and its name (the 4th column, "" if none)."""

    interval: Interval
    name: str


def read_bed_records(
    path: str | Path, genome: Genome, *, shown: str | None = None
) -> list[BedRecord]:
    """The lines of a BED file (plain or gzip, LF or CRLF), contig names resolved against
    ``genome``; ``shown`` is how errors name the file (default: its path).

    ``track``/``browser``/``#`` lines and blank lines are skipped; every other line needs a
    contig of the genome (or an alias) and ``0 <= start < end <= contig length``. Columns are
    tab-separated, or split on whitespace when a line has no tab.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such BED file")
    shown = str(path) if shown is None else shown
    with path.open("rb") as handle:
        gzipped = handle.read(2) == b"\x1f\x8b"
    opener = gzip.open if gzipped else open
    out: list[BedRecord] = []
    with opener(path, "rt") as handle:
        for line_no, line in enumerate(handle, start=1):
            text = line.rstrip("\r\n")
            if not text.strip() or text.startswith(("#", "track", "browser")):
                continue
            fields = text.split("\t") if "\t" in text else text.split()
            where = f"{shown} line {line_no}"
            if len(fields) < 3:
                raise BedFormatError(f"{where}: expected 3+ columns (contig, start, end)")
            try:
                start, end = int(fields[1]), int(fields[2])
            except ValueError as err:
                raise BedFormatError(
                    f"{where}: start and end must be integers, got {fields[1]!r}, {fields[2]!r}"
                ) from err
            try:
                contig = genome.resolve(fields[0], where=where)
            except ContigNameError as err:
                raise BedFormatError(str(err)) from err
            check_span(genome, contig, start, end, where, error=BedFormatError)
            name = fields[3] if len(fields) > 3 else ""
            out.append(BedRecord(Interval(contig, start, end), name))
    return out


def read_bed(path: str | Path, genome: Genome, *, shown: str | None = None) -> list[Interval]:
    """The intervals of a BED file: :func:`read_bed_records` without the names."""
    return [record.interval for record in read_bed_records(path, genome, shown=shown)]


def check_span(
    genome: Genome,
    contig: str,
    start: int,
    end: int,
    where: str,
    *,
    error: type[TaskInputError] = TaskInputError,
) -> None:
    """An ``error`` naming ``where`` unless ``0 <= start < end <= length of contig``."""
    length = genome.lengths[contig]
    if start < 0 or end <= start:
        raise error(
            f"{where}: [{start}, {end}) is empty or negative; expected 0 <= start < end "
            f"(0-based, half-open)"
        )
    if end > length:
        raise error(
            f"{where}: [{start}, {end}) ends past the end of contig {contig!r}, which has "
            f"{length:,} bases; expected end <= {length}"
        )


def whole_contigs(genome: Genome, contigs: Iterable[str] | None = None) -> list[Interval]:
    names = genome.contigs if contigs is None else [genome.resolve(c) for c in contigs]
    return [Interval(c, 0, genome.lengths[c]) for c in names]


def merge(intervals: Iterable[Interval], order: Sequence[str] | None = None) -> list[Interval]:
    """Sorted, non-overlapping union (contigs in ``order`` if given, else by name)."""
    rank = {c: i for i, c in enumerate(order)} if order is not None else None
    items = sorted(
        intervals, key=lambda iv: (rank[iv.contig] if rank else iv.contig, iv.start, iv.end)
    )
    out: list[Interval] = []
    for iv in items:
        if out and out[-1].contig == iv.contig and iv.start <= out[-1].end:
            last = out[-1]
            out[-1] = Interval(last.contig, last.start, max(last.end, iv.end))
        else:
            out.append(iv)
    return out


def subtract(keep: Iterable[Interval], remove: Iterable[Interval]) -> list[Interval]:
    """Parts of ``keep`` that overlap nothing in ``remove``."""
    by_contig: dict[str, list[Interval]] = {}
    for iv in merge(remove):
        by_contig.setdefault(iv.contig, []).append(iv)
    out: list[Interval] = []
    for iv in keep:
        pos = iv.start
        for cut in by_contig.get(iv.contig, []):
            if cut.end <= pos or cut.start >= iv.end:
                continue
            if cut.start > pos:
                out.append(Interval(iv.contig, pos, cut.start))
            pos = max(pos, cut.end)
        if pos < iv.end:
            out.append(Interval(iv.contig, pos, iv.end))
    return out


def intersect(a: Iterable[Interval], b: Iterable[Interval]) -> list[Interval]:
    """Overlaps of ``a`` with the union of ``b``."""
    b_merged = merge(b)
    out: list[Interval] = []
    for iv in a:
        for other in b_merged:
            if other.contig != iv.contig:
                continue
            start, end = max(iv.start, other.start), min(iv.end, other.end)
            if start < end:
                out.append(Interval(iv.contig, start, end))
    return out


@dataclass(frozen=True)
class Split:
    """Disjoint training and validation intervals (no base belongs to both)."""

    train: list[Interval]
    validation: list[Interval]


def split_regions(
    genome: Genome,
    *,
    include: list[Interval] | None = None,
    exclude: list[Interval] | None = None,
    val_contigs: Sequence[str] = (),
    val_regions: list[Interval] | None = None,
    val_fraction: float = 0.05,
    min_val_length: int = 1,
) -> Split:
    """Split the usable genome (``include`` or all contigs, minus ``exclude``) into training
    and validation.

    Validation is, in order of precedence: the contigs ``val_contigs``; the intervals
    ``val_regions``; or the last ``val_fraction`` of every usable interval whose tail would be
    at least ``min_val_length`` long (shorter intervals stay all training).
    """
    order = genome.contigs
    usable = merge(include if include is not None else whole_contigs(genome), order)
    if exclude:
        usable = subtract(usable, exclude)
    if val_contigs:
        names = {genome.resolve(c, where="val_contigs") for c in val_contigs}
        validation = [iv for iv in usable if iv.contig in names]
    elif val_regions is not None:
        validation = intersect(usable, val_regions)
    else:
        validation = []
        for iv in usable:
            tail = math.ceil(iv.length * val_fraction)
            if val_fraction > 0 and tail >= min_val_length and iv.length - tail > 0:
                validation.append(Interval(iv.contig, iv.end - tail, iv.end))
    validation = merge(validation, order)
    train = subtract(usable, validation)
    return Split(train=merge(train, order), validation=validation)
