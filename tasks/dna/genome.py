"""Random access to a genome that is never loaded into memory.

:class:`Genome` opens a plain or bgzip FASTA (or a GenBank file, converted once into a
cache) through its faidx index and hands out stretches as text or tokens. The htslib handle
is opened lazily and per process, so a ``Genome`` can be pickled into Ray workers or
forked data loaders.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pysam

from gfssm.tasks.dna.fasta_format import (
    BGZIP,
    CONVERTIBLE,
    PLAIN,
    FastaFormatError,
    UnsupportedCompressionError,
    conversion_advice,
    convert_to_bgzip,
    detect_compression,
    ensure_index,
    file_key,
)
from gfssm.tasks.dna.genbank import genbank_to_fasta, is_genbank
from gfssm.tasks.dna.tokens import N, encode
from gfssm.tasks.jobs import TaskInputError


class ContigNameError(KeyError, TaskInputError):
    """A contig name is not in the genome; the message suggests the likely match."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class MissingFileError(TaskInputError, FileNotFoundError):
    """An input file does not exist; the message names it."""


def default_cache_dir() -> Path:
    """``$GFSSM_CACHE/dna``, else ``$XDG_CACHE_HOME/gfssm/dna``, else ``~/.cache/gfssm/dna``."""
    if os.environ.get("GFSSM_CACHE"):
        return Path(os.environ["GFSSM_CACHE"]) / "dna"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gfssm" / "dna"


def contig_key(name: str) -> str:
    """A loose identity of a contig name for suggestions: ``gi|1|ref|NC_007795.1|``,
    ``NC_007795.1``, ``NC_007795`` and ``chrNC_007795`` all give ``nc_007795``."""
    text = name.strip()
    if "|" in text:
        parts = [p for p in text.split("|") if p]
        for tag in ("ref", "gb", "emb", "dbj"):
            if tag in parts and parts.index(tag) + 1 < len(parts):
                text = parts[parts.index(tag) + 1]
                break
        else:
            text = parts[-1] if parts else text
    text = text.split()[0] if text.split() else text
    text = re.sub(r"\.\d+$", "", text)
    text = re.sub(r"^chr(?=.)", "", text, flags=re.IGNORECASE)
    return text.lower()


def read_fai(fai: Path) -> dict[str, int]:
    lengths: dict[str, int] = {}
    with open(fai) as handle:
        for line_no, line in enumerate(handle, start=1):
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 5 or not fields[1].isdigit():
                raise FastaFormatError(f"{fai} line {line_no}: not a faidx index line")
            lengths[fields[0]] = int(fields[1])
    return lengths


class Genome:
    """A FASTA (plain or bgzip) or GenBank file with random access.

    ``aliases`` maps names used elsewhere (VCF, BED) to the genome's own contig names.
    A gzip, xz, bzip2 or zstd file (no random access) is converted into ``cache_dir`` once,
    with a one-line notice; with ``convert_compressed=False`` it is an error with advice.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        cache_dir: str | os.PathLike | None = None,
        convert_compressed: bool = True,
        aliases: Mapping[str, str] | None = None,
    ) -> None:
        requested = Path(path).expanduser()
        if requested.is_dir():
            raise MissingFileError(f"{requested}: is a folder; expected a FASTA/GenBank file")
        if not requested.is_file():
            raise MissingFileError(f"{requested}: no such FASTA/GenBank file")
        self.source = requested
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.features_bed: Path | None = None
        fasta = requested
        if is_genbank(requested):
            fasta, self.features_bed = genbank_to_fasta(requested, self.cache_dir)
        compression = detect_compression(fasta)
        if compression not in (PLAIN, BGZIP):
            if not (convert_compressed and compression in CONVERTIBLE):
                raise UnsupportedCompressionError(conversion_advice(fasta, compression))
            fasta = convert_to_bgzip(fasta, self.cache_dir, compression)
            compression = BGZIP
        self.path = fasta
        self.compression = compression
        self.fai, self.gzi = ensure_index(fasta, compression, self.cache_dir)
        self.lengths = read_fai(self.fai)
        self.aliases = dict(aliases or {})
        for alias, target in self.aliases.items():
            if target not in self.lengths:
                raise ContigNameError(
                    f"alias {alias!r} -> {target!r}: {target!r} is not a contig of {self.path}"
                    f"{self._suggestion(target)}"
                )
        self._handle: pysam.FastaFile | None = None
        self._pid = -1

    # Names -------------------------------------------------------------------------
    @property
    def contigs(self) -> list[str]:
        return list(self.lengths)

    @property
    def total_length(self) -> int:
        return sum(self.lengths.values())

    def resolve(self, name: str, *, where: str = "") -> str:
        """The genome's name for ``name`` (itself or through ``aliases``), or an error that
        says where the name came from and which contig it probably means."""
        if name in self.lengths:
            return name
        if name in self.aliases:
            return self.aliases[name]
        origin = f"{where}: " if where else ""
        raise ContigNameError(
            f"{origin}contig {name!r} is not in {self.source}{self._suggestion(name)}"
        )

    def _suggestion(self, name: str) -> str:
        key = contig_key(name)
        matches = [c for c in self.lengths if contig_key(c) == key]
        if matches:
            return (
                f"; the FASTA has {matches[0]!r}, which looks like the same sequence under "
                f"another name: map it with contig_aliases={{{name!r}: {matches[0]!r}}}"
            )
        listed = ", ".join(repr(c) for c in list(self.lengths)[:5])
        more = f" and {len(self.lengths) - 5} more" if len(self.lengths) > 5 else ""
        return f"; its contigs are {listed}{more}"

    def length(self, contig: str) -> int:
        return self.lengths[self.resolve(contig)]

    # Sequence ----------------------------------------------------------------------
    def _fasta(self) -> pysam.FastaFile:
        if self._handle is None or self._pid != os.getpid():
            self._handle = pysam.FastaFile(
                str(self.path),
                filepath_index=str(self.fai),
                filepath_index_compressed=str(self.gzi) if self.gzi else None,
            )
            self._pid = os.getpid()
        return self._handle

    def fetch(self, contig: str, start: int, end: int) -> str:
        """Bases ``[start, end)`` (0-based) of ``contig`` as stored (case kept)."""
        name = self.resolve(contig)
        length = self.lengths[name]
        if not 0 <= start <= end <= length:
            raise IndexError(
                f"{self.path}: [{start}, {end}) is outside contig {name!r} of length {length}"
            )
        return self._fasta().fetch(name, start, end)

    def tokens(self, contig: str, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        """Tokens (L,) int64 and soft-mask flags (L,) bool of ``[start, end)``."""
        return encode(self.fetch(contig, start, end), contig=contig, start=start)

    def n_runs(self, chunk: int = 1 << 22) -> list[tuple[str, int, int]]:
        """Every run of N (or IUPAC ambiguity) bases as (contig, start, end), found by one
        pass over the genome in ``chunk``-sized pieces. Cached in ``cache_dir`` for genomes
        over 64 Mb, where the pass takes a while."""
        cached = self._n_runs_cache_file()
        if cached is not None and cached.exists():
            return [
                (f[0], int(f[1]), int(f[2]))
                for f in (line.split("\t") for line in cached.read_text().splitlines())
            ]
        runs: list[tuple[str, int, int]] = []
        for contig, length in self.lengths.items():
            pending = -1  # start of a run still open at the end of the previous chunk
            for start in range(0, length, chunk):
                end = min(length, start + chunk)
                ids, _ = self.tokens(contig, start, end)
                is_n = np.concatenate([[False], ids == N, [False]])
                edges = (np.flatnonzero(is_n[1:] != is_n[:-1]) + start).tolist()
                found = list(zip(edges[::2], edges[1::2]))
                if pending >= 0:
                    if found and found[0][0] == start:
                        found[0] = (pending, found[0][1])
                    else:
                        runs.append((contig, pending, start))
                    pending = -1
                if found and found[-1][1] == end and end < length:
                    pending = found.pop()[0]
                runs.extend((contig, a, b) for a, b in found)
            if pending >= 0:
                runs.append((contig, pending, length))
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            partial = cached.with_name(cached.name + ".partial")
            partial.write_text("".join(f"{c}\t{a}\t{b}\n" for c, a, b in runs))
            os.replace(partial, cached)
        return runs

    def _n_runs_cache_file(self) -> Path | None:
        if self.total_length < 64_000_000:
            return None
        return self.cache_dir / f"{self.path.name}.{file_key(self.path)}.nruns.bed"

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_handle"], state["_pid"] = None, -1
        return state

    def __repr__(self) -> str:
        return f"Genome({str(self.path)!r}, {len(self.lengths)} contigs, {self.total_length:,} bp)"
