"""FASTA files on disk: compression, a validating scan, the faidx index, conversion.

Random access needs a plain or bgzip-compressed FASTA with a ``.fai`` index (plus ``.gzi``
for bgzip); both are made when missing. Before an index is built the file is scanned once,
in constant memory, so that a malformed file fails with a message naming its line instead
of an index that silently drops records (htslib skips empty and duplicate records).
Plain gzip, xz, bzip2 and zstd files have no random access: they are converted once into a
bgzip copy in a cache, with a one-line notice (:func:`convert_to_bgzip`), and the copy is
reused while the original keeps its size and modification time.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import logging
import lzma
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pysam

from gfssm.tasks.dna.tokens import ALLOWED_BYTES
from gfssm.tasks.jobs import TaskInputError

log = logging.getLogger("gfssm.tasks.dna")

PLAIN, BGZIP, GZIP, XZ, BZIP2, ZSTD, ZIP = "plain", "bgzip", "gzip", "xz", "bzip2", "zstd", "zip"
CONVERTIBLE = (GZIP, XZ, BZIP2, ZSTD)


class FastaFormatError(TaskInputError):
    """A FASTA file is malformed; the message names the file and line."""


class UnsupportedCompressionError(TaskInputError):
    """A file is compressed in a way that GFSSM cannot read or convert."""


def notice(text: str) -> None:
    """A one-line notice for the user (conversions into the cache and the like)."""
    log.warning("%s", text)


@dataclass(frozen=True)
class FastaRecord:
    """One record as the scan saw it: name, length in bases and the header's line number."""

    name: str
    length: int
    line: int


def detect_compression(path: Path) -> str:
    """``plain``, ``bgzip``, ``gzip``, ``xz``, ``bzip2``, ``zstd`` or ``zip`` from magic bytes."""
    with open(path, "rb") as handle:
        head = handle.read(18)
    if head[:2] == b"\x1f\x8b":
        # bgzip is gzip whose header has an extra field with the subfield id "BC".
        has_extra = len(head) >= 14 and head[3] & 4
        return BGZIP if has_extra and head[12:14] == b"BC" else GZIP
    if head[:6] == b"\xfd7zXZ\x00":
        return XZ
    if head[:3] == b"BZh":
        return BZIP2
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return ZSTD
    if head[:4] == b"PK\x03\x04":
        return ZIP
    return PLAIN


def conversion_advice(path: Path, compression: str) -> str:
    decompress = {
        GZIP: f"gzip -dc {path}",
        XZ: f"xz -dc {path}",
        BZIP2: f"bzip2 -dc {path}",
        ZSTD: f"zstd -dc {path}",
        ZIP: f"unzip -p {path}",
    }[compression]
    return (
        f"{path}: {compression}-compressed FASTA has no random access; expected plain text or "
        f"bgzip. Convert it once with `{decompress} | bgzip > {path.stem}.fa.gz` (bgzip is in "
        f"the htslib/tabix package)"
        + (
            ", or let GFSSM convert it into its cache (task.convert_compressed=true, the default)"
            if compression in CONVERTIBLE
            else ""
        )
    )


def open_text(path: Path, compression: str) -> BinaryIO:
    """A binary stream of the decompressed bytes of ``path``."""
    if compression == PLAIN:
        return open(path, "rb")
    if compression in (BGZIP, GZIP):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if compression == XZ:
        return lzma.open(path, "rb")  # type: ignore[return-value]
    if compression == BZIP2:
        return bz2.open(path, "rb")  # type: ignore[return-value]
    if compression == ZSTD:
        return _open_zstd(path)
    raise UnsupportedCompressionError(
        f"{path}: {compression}-compressed; expected plain text, gzip, bgzip, bzip2, xz or "
        f"zstd. Unpack it first (e.g. `unzip -p {path} > {path.stem}`)"
    )


def _open_zstd(path: Path) -> BinaryIO:
    """zstd through the ``zstandard`` package, else through the ``zstd`` program."""
    try:
        import zstandard
    except ImportError:
        zstandard = None
    if zstandard is not None:
        return zstandard.open(path, "rb")  # type: ignore[return-value]
    program = shutil.which("zstd")
    if program is None:
        raise UnsupportedCompressionError(
            f"{path}: zstd-compressed, and neither the zstandard Python package nor the zstd "
            f"program is installed; `pip install zstandard`, or unpack it with "
            f"`zstd -d {path}`"
        )
    return _ProcessStream([program, "-dc", "--", str(path)], path)


class _ProcessStream:
    """The stdout of a decompressing program as a binary stream (a context manager); its
    exit status is checked on close."""

    def __init__(self, command: list[str], path: Path) -> None:
        self.path = path
        self._process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
        assert self._process.stdout is not None
        self._stdout = self._process.stdout

    def read(self, size: int = -1) -> bytes:
        return self._stdout.read(size)

    def readline(self, size: int = -1) -> bytes:
        return self._stdout.readline(size)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._stdout)

    def close(self) -> None:
        self._stdout.close()
        assert self._process.stderr is not None
        error = self._process.stderr.read().decode("utf-8", "replace").strip()
        self._process.stderr.close()
        code = self._process.wait()
        if code not in (0, -13):  # -13: SIGPIPE when the reader stopped early
            raise UnsupportedCompressionError(f"{self.path}: cannot be decompressed ({error})")

    def __enter__(self) -> _ProcessStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def scan_fasta(path: Path, compression: str | None = None) -> Iterator[FastaRecord]:
    """Check ``path`` line by line (constant memory) and yield its records.

    Raises :class:`FastaFormatError` naming the line for: text before the first header, a
    header without a name, duplicate names, records without sequence, unequal line lengths
    inside a record (faidx needs them equal except the last), and characters that are not
    nucleotides. Windows line endings are accepted.
    """
    compression = compression or detect_compression(path)
    name: str | None = None
    header_line = 0
    length = 0
    width = 0  # bases per line of the current record (its first line)
    short_line = 0  # line number of a line shorter than ``width`` (must be the last)
    seen: dict[str, int] = {}
    with open_text(path, compression) as handle:
        line_no = 0
        for line_no, raw in enumerate(handle, start=1):
            line = raw.rstrip(b"\r\n")
            if line.startswith(b">"):
                if name is not None:
                    yield _finish(path, name, header_line, length)
                name = (
                    line[1:].split(maxsplit=1)[0].decode("utf-8", "replace")
                    if line[1:].strip()
                    else ""
                )
                if not name:
                    raise FastaFormatError(f"{path} line {line_no}: header '>' without a name")
                if name in seen:
                    raise FastaFormatError(
                        f"{path} line {line_no}: duplicate sequence name {name!r} (first at "
                        f"line {seen[name]}); expected every record to have a unique name"
                    )
                seen[name] = header_line = line_no
                length = width = short_line = 0
                continue
            if name is None:
                if not line.strip():
                    continue
                raise FastaFormatError(
                    f"{path} line {line_no}: expected a FASTA header starting with '>', found "
                    f"{line[:40].decode('utf-8', 'replace')!r}; is this a FASTA file?"
                )
            if short_line and line:
                raise FastaFormatError(
                    f"{path} line {short_line}: record {name!r} has lines of {width} bases but "
                    f"line {short_line} is shorter and is not the last line of the record; "
                    f"faidx needs equal line lengths (rewrap, e.g. `seqkit seq -w 60`)"
                )
            if not line:
                short_line = line_no
                continue
            bad = line.translate(None, ALLOWED_BYTES)
            if bad:
                column = next(i for i, b in enumerate(line) if b not in ALLOWED_BYTES)
                raise FastaFormatError(
                    f"{path} line {line_no}: contig {name!r} position {length + column + 1} "
                    f"(1-based): character {chr(line[column])!r} is not a nucleotide; expected "
                    f"A, C, G, T, N or an IUPAC code"
                )
            if width == 0:
                width = len(line)
            elif len(line) > width:
                raise FastaFormatError(
                    f"{path} line {line_no}: record {name!r} has lines of {width} bases but "
                    f"this one has {len(line)}; faidx needs equal line lengths"
                )
            elif len(line) < width:
                short_line = line_no
            length += len(line)
    if name is None:
        raise FastaFormatError(f"{path}: no FASTA records (expected lines starting with '>')")
    yield _finish(path, name, header_line, length)


def _finish(path: Path, name: str, line: int, length: int) -> FastaRecord:
    if length == 0:
        raise FastaFormatError(
            f"{path} line {line}: record {name!r} is empty; expected sequence lines after "
            f"its header"
        )
    return FastaRecord(name, length, line)


def index_paths(path: Path, compression: str, cache_dir: Path) -> tuple[Path, Path | None]:
    """Where the ``.fai`` (and ``.gzi``) of ``path`` live: beside it, or in ``cache_dir``
    when that directory cannot be written and no index exists beside it yet."""
    fai = Path(f"{path}.fai")
    gzi = Path(f"{path}.gzi") if compression == BGZIP else None
    if fai.exists() and (gzi is None or gzi.exists()):
        return fai, gzi
    if os.access(path.parent, os.W_OK):
        return fai, gzi
    key = file_key(path)
    cached_fai = cache_dir / f"{path.name}.{key}.fai"
    return cached_fai, (cache_dir / f"{path.name}.{key}.gzi" if gzi else None)


def ensure_index(path: Path, compression: str, cache_dir: Path) -> tuple[Path, Path | None]:
    """Scan and index ``path`` unless its index exists; returns (fai, gzi or None)."""
    fai, gzi = index_paths(path, compression, cache_dir)
    if fai.exists() and (gzi is None or gzi.exists()):
        return fai, gzi
    for _ in scan_fasta(path, compression):
        pass
    fai.parent.mkdir(parents=True, exist_ok=True)
    partial_fai = fai.with_name(fai.name + ".partial")
    partial_gzi = gzi.with_name(gzi.name + ".partial") if gzi else None
    args = [str(path), "--fai-idx", str(partial_fai)]
    if partial_gzi is not None:
        args += ["--gzi-idx", str(partial_gzi)]
    try:
        pysam.faidx(*args)
    except pysam.SamtoolsError as err:
        raise FastaFormatError(f"{path}: htslib could not index it: {err}") from err
    if partial_gzi is not None and gzi is not None:
        os.replace(partial_gzi, gzi)
    os.replace(partial_fai, fai)
    return fai, gzi


def convert_to_bgzip(
    path: Path,
    cache_dir: Path,
    compression: str | None = None,
    *,
    kind: str = "FASTA",
    suffix: str = ".fa.gz",
    say: Callable[[str], None] | None = notice,
) -> Path:
    """A bgzip copy of the gzip/xz/bzip2/zstd file ``path`` in ``cache_dir`` (made once,
    with a one-line notice through ``say``; reused while ``path`` keeps its size and
    modification time)."""
    compression = compression or detect_compression(path)
    if compression not in CONVERTIBLE:
        raise UnsupportedCompressionError(conversion_advice(path, compression))
    stem = path.name
    for ending in (".gz", ".xz", ".bz2", ".zst", ".zstd", ".bgz"):
        stem = stem.removesuffix(ending)
    for ending in (".fa", ".fasta", ".fna", ".vcf"):
        stem = stem.removesuffix(ending)
    target = cache_dir / f"{stem}.{file_key(path)}{suffix}"
    if target.exists():
        return target
    if say is not None:
        say(
            f"{path}: {compression}-compressed {kind} (no random access); converting it once "
            f"into {target} (bgzip), reused while the file is unchanged"
        )
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise TaskInputError(
            f"{path}: needs a bgzip copy, but the cache folder {cache_dir} cannot be made "
            f"({err.strerror}); set GFSSM_CACHE or task.cache_dir to a writable folder"
        ) from None
    partial = target.with_name(target.name + ".partial")
    try:
        with (
            open_text(path, compression) as src,
            pysam.BGZFile(str(partial), "wb", index=None) as dst,
        ):
            while block := src.read(1 << 20):
                dst.write(block)
    except (OSError, EOFError, lzma.LZMAError) as err:
        partial.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno is not None:
            raise
        raise UnsupportedCompressionError(
            f"{path}: the {compression} data is damaged or truncated ({err}); expected a "
            f"complete {compression} file"
        ) from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, target)
    return target


def file_key(path: Path) -> str:
    stat = path.stat()
    text = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return hashlib.sha1(text.encode()).hexdigest()[:12]
