"""GenBank files become a bgzip FASTA plus a BED of their features, in a cache.

Biopython parses one record at a time, so memory holds one record, never the whole file.
"""

from __future__ import annotations

import gzip
import io
import lzma
import os
from pathlib import Path

import pysam
from Bio import SeqIO
from Bio.Seq import UndefinedSequenceError

from gfssm.tasks.dna.fasta_format import FastaFormatError, file_key

GENBANK_SUFFIXES = (".gb", ".gbk", ".gbff", ".genbank")
LINE_WIDTH = 60
LABEL_QUALIFIERS = ("gene", "locus_tag", "protein_id", "product")


def is_genbank(path: Path) -> bool:
    """True for ``.gb/.gbk/.gbff/.genbank`` (optionally ``.gz``/``.xz``) or a file whose
    first line starts with ``LOCUS``."""
    name = path.name.lower().removesuffix(".gz").removesuffix(".xz")
    if name.endswith(GENBANK_SUFFIXES):
        return True
    try:
        with _open_text(path) as handle:
            return handle.readline().startswith("LOCUS ")
    except (OSError, UnicodeDecodeError, EOFError, lzma.LZMAError):
        return False


def _open_text(path: Path) -> io.TextIOBase:
    with open(path, "rb") as raw:
        magic = raw.read(6)
    if magic[:2] == b"\x1f\x8b":
        return gzip.open(path, "rt")  # type: ignore[return-value]
    if magic == b"\xfd7zXZ\x00":
        return lzma.open(path, "rt")  # type: ignore[return-value]
    return open(path)


def genbank_to_fasta(path: Path, cache_dir: Path) -> tuple[Path, Path]:
    """Write ``<cache>/<name>.<key>.fa.gz`` (bgzip) and ``.features.bed``; reuse them while
    ``path`` is unchanged. BED names are ``type:label`` (gene, locus tag, protein id or product); one line per part of a
    joined location."""
    stem = cache_dir / f"{path.name}.{file_key(path)}"
    fasta, bed = Path(f"{stem}.fa.gz"), Path(f"{stem}.features.bed")
    if fasta.exists() and bed.exists():
        return fasta, bed
    cache_dir.mkdir(parents=True, exist_ok=True)
    part_fasta, part_bed = Path(f"{fasta}.partial"), Path(f"{bed}.partial")
    seen: dict[str, int] = {}
    with (
        _open_text(path) as handle,
        pysam.BGZFile(str(part_fasta), "wb", index=None) as out_fasta,
        open(part_bed, "w") as out_bed,
    ):
        try:
            records = SeqIO.parse(handle, "genbank")
            for number, record in enumerate(records, start=1):
                name = record.id if record.id and record.id != "<unknown id>" else record.name
                if name in seen:
                    raise FastaFormatError(
                        f"{path} record {number}: duplicate sequence name {name!r} (first in "
                        f"record {seen[name]}); expected unique accessions"
                    )
                seen[name] = number
                try:
                    sequence = str(record.seq)
                except UndefinedSequenceError as err:
                    raise FastaFormatError(
                        f"{path} record {number} ({name}): has no sequence (no ORIGIN section); "
                        f"expected a GenBank file with sequence"
                    ) from err
                if not sequence:
                    raise FastaFormatError(f"{path} record {number} ({name}): empty sequence")
                out_fasta.write(f">{name} {record.description}\n".encode())
                for i in range(0, len(sequence), LINE_WIDTH):
                    out_fasta.write(sequence[i : i + LINE_WIDTH].encode() + b"\n")
                for feature in record.features:
                    if feature.type == "source":
                        continue
                    qualifiers = feature.qualifiers
                    label = next(
                        (qualifiers[k][0] for k in LABEL_QUALIFIERS if qualifiers.get(k)), ""
                    ).replace(" ", "_")
                    strand = {1: "+", -1: "-"}.get(feature.location.strand, ".")
                    for part in feature.location.parts:
                        out_bed.write(
                            f"{name}\t{int(part.start)}\t{int(part.end)}\t"
                            f"{feature.type}:{label}\t0\t{strand}\n"
                        )
        except ValueError as err:
            if isinstance(err, FastaFormatError):
                raise
            raise FastaFormatError(f"{path}: not a valid GenBank file ({err})") from err
    if not seen:
        raise FastaFormatError(f"{path}: no GenBank records (expected a line starting LOCUS)")
    os.replace(part_bed, bed)
    os.replace(part_fasta, fasta)
    return fasta, bed
