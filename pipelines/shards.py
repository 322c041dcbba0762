"""One shard store for every resumable batch job: one file per finished work item.

The store's folder holds ``run.json`` (the job's kind, its input fingerprint and the model
fingerprint) and ``<key>.bin`` per finished item, each written to a temporary name and
renamed, so a file that exists is complete. A folder holding another run's shards is an error
naming what differs, never a silent mix; a disk that fills up ends in one line, leaving no
partial shard behind.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from gfssm.pipelines.errors import GFSSMUserError
from gfssm.tasks.pretrained import WEIGHTS_FILE

MANIFEST = "run.json"
_PARTIAL = ".partial"
_SAFE_KEY = re.compile(r"^[A-Za-z0-9._=+-]{1,200}$")


class ShardStoreError(GFSSMUserError, ValueError):
    pass


class DiskFullError(GFSSMUserError, OSError):
    pass


def model_fingerprint(model_dir: Path) -> str:
    """The one model fingerprint of batch jobs: SHA-256 of the weights file."""
    digest = hashlib.sha256()
    with (Path(model_dir) / WEIGHTS_FILE).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def disk_full(err: OSError) -> bool:
    return err.errno in (errno.ENOSPC, errno.EDQUOT)


def _file_name(key: str) -> str:
    if _SAFE_KEY.match(key):
        return f"{key}.bin"
    # Keys with characters a file system may refuse (contig names with '|' or '/')
    safe = re.sub(r"[^A-Za-z0-9._=+-]", "_", key)[:80]
    return f"{safe}-{hashlib.sha1(key.encode()).hexdigest()[:12]}.bin"


class ShardStore:
    """Finished results of one batch job, resumable across runs of the same command."""

    def __init__(self, folder: Path, manifest: dict[str, Any]) -> None:
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ShardStoreError(
                f"{self.folder}: cannot create the shard folder ({err})"
            ) from None
        for stale in self.folder.glob(f"*{_PARTIAL}"):  # left by a kill mid-write
            stale.unlink(missing_ok=True)
        path = self.folder / MANIFEST
        manifest = json.loads(json.dumps(manifest, sort_keys=True))  # JSON-normal form
        if path.exists():
            try:
                previous = json.loads(path.read_text())
            except json.JSONDecodeError:
                previous = None
            if previous != manifest:
                changed = sorted(
                    k
                    for k in set(previous or {}) | set(manifest)
                    if (previous or {}).get(k) != manifest.get(k)
                )
                raise ShardStoreError(
                    f"{self.folder} holds results of another run (differs in "
                    f"{', '.join(changed) or 'its manifest'}); use another output path or "
                    f"delete that folder"
                )
        else:
            self._write_bytes(path, json.dumps(manifest, indent=1, sort_keys=True).encode())

    def path(self, key: str) -> Path:
        return self.folder / _file_name(key)

    def done(self, key: str) -> bool:
        return self.path(key).exists()

    def write(self, key: str, data: bytes) -> None:
        self._write_bytes(self.path(key), data)

    def read(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def _write_bytes(self, target: Path, data: bytes) -> None:
        tmp = target.with_name(target.name + _PARTIAL)
        try:
            with tmp.open("wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            if disk_full(err):
                kept = sum(1 for _ in self.folder.glob("*.bin"))
                raise DiskFullError(
                    f"disk full while writing {target}: {kept} finished result(s) are kept in "
                    f"{self.folder}; free some space and rerun the same command to resume"
                ) from None
            raise ShardStoreError(f"cannot write {target}: {err}") from None
