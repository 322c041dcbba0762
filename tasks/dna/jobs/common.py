"""What the DNA batch jobs share: the genome of a scoring command, file identities, hints."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from gfssm.tasks.dna.genome import Genome, default_cache_dir
from gfssm.tasks.jobs import TaskInputError, resolve_path

ALIAS_HINT = " (on the command line: --alias NAME_IN_FILE=FASTA_CONTIG)"


def parse_aliases(items: list[str] | None) -> dict[str, str]:
    """``--alias NAME=CONTIG`` values as a mapping."""
    out = {}
    for item in items or []:
        name, sep, target = item.partition("=")
        if not sep or not name or not target:
            raise TaskInputError(f"--alias {item!r}: expected NAME_IN_FILE=FASTA_CONTIG")
        out[name] = target
    return out


def cache_dir_of(settings: Any) -> Path:
    """The model's ``cache_dir`` when it is an absolute path, else the default cache."""
    value = getattr(settings, "cache_dir", None)
    if value and Path(value).expanduser().is_absolute():
        return Path(value).expanduser()
    return default_cache_dir()


def open_genome(fasta: Path, settings: Any, aliases: dict[str, str]) -> Genome:
    """The genome to score, with the user's ``--alias`` es plus those of the model's
    training settings that name a contig of this FASTA (a model may score other genomes)."""
    cache = cache_dir_of(settings)
    model_aliases = dict(getattr(settings, "contig_aliases", {}) or {})
    if model_aliases:
        lengths = Genome(fasta, cache_dir=cache).lengths
        model_aliases = {a: t for a, t in model_aliases.items() if t in lengths}
    return Genome(fasta, cache_dir=cache, aliases={**model_aliases, **aliases})


@contextlib.contextmanager
def command_line_hints() -> Iterator[None]:
    """Input errors whose advice is a Python setting get the command-line spelling."""
    try:
        yield
    except TaskInputError as err:
        text = str(err)
        if "contig_aliases=" in text and ALIAS_HINT not in text:
            raise type(err)(text + ALIAS_HINT) from err
        raise


def output_folder(value: str, base_dir: Path, what: str = "--out") -> Path:
    """``value`` resolved against ``base_dir``, created; an error when it cannot be."""
    path = Path(resolve_path(value, base_dir) or "")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise TaskInputError(f"{what} {value}: is a file; expected a folder") from None
    except OSError as err:
        raise TaskInputError(f"{what} {value}: cannot be created ({err.strerror})") from None
    return path


def file_identity(path: Path | None) -> dict[str, Any] | None:
    """What makes an input 'the same' for resuming: absolute path, size, mtime."""
    if path is None:
        return None
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def job_fingerprint(
    job: str,
    genome: Genome,
    *,
    files: dict[str, Path | None] | None = None,
    digests: dict[str, Any] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """The inputs that decide whether a stored run of ``job`` on ``genome`` is resumed: the
    identities of its FASTA and of ``files``, its contig aliases, a :func:`digest` of each of
    ``digests`` (the planned work, too long to store) and ``options`` as they are.

    For the same inputs the values must never change: a different fingerprint makes an
    interrupted run start again.
    """
    return {
        "job": job,
        "fasta": file_identity(genome.source),
        **{key: file_identity(path) for key, path in (files or {}).items()},
        "aliases": genome.aliases,
        **{key: digest(value) for key, value in (digests or {}).items()},
        **options,
    }


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def npz_arrays(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data)) as loaded:
        return {name: loaded[name] for name in loaded.files}
