"""One shard per work item on disk, written atomically, so scoring can resume.

A shard is three ``.npy`` arrays (log2 probability, entropy, base tokens) plus a JSON
marker written last. Arrays are memory-mapped, so a whole-chromosome item never has to fit
in memory; an item whose marker exists is done and is skipped on resume.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from gfssm.tasks.dna.scoring.plan import WorkItem
from gfssm.tasks.dna.scoring.stream import SegmentScores

FIELDS = ("log2_prob", "entropy_bits", "base")


class ShardStore:
    """Shards of the items of one scoring run, in ``directory``."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _marker(self, item: WorkItem) -> Path:
        return self.directory / f"{item.key}.json"

    def _folder(self, item: WorkItem, partial: bool = False) -> Path:
        return self.directory / (f"{item.key}.partial" if partial else item.key)

    def is_done(self, item: WorkItem) -> bool:
        marker = self._marker(item)
        if not marker.exists():
            return False
        # a marker from another plan (same name, other item) is not this item's
        return json.loads(marker.read_text()).get("item") == item.to_dict()

    def open_for_writing(self, item: WorkItem) -> SegmentScores:
        """Fresh memory-mapped arrays for ``item`` in a partial folder."""
        folder = self._folder(item, partial=True)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        n = item.length
        arrays = {}
        for name, dtype, fill in (
            ("log2_prob", np.float32, np.nan),
            ("entropy_bits", np.float32, np.nan),
            ("base", np.uint8, 0),
        ):
            array = np.lib.format.open_memmap(folder / f"{name}.npy", "w+", dtype, (n,))
            array[:] = fill
            arrays[name] = array
        return SegmentScores(item, **arrays)

    def commit(self, scores: SegmentScores, extra: dict | None = None) -> None:
        """Flush ``scores`` (from :meth:`open_for_writing`, or any in-memory result, e.g.
        from a Ray worker) and mark the item done."""
        item = scores.item
        partial = self._folder(item, partial=True)
        if not partial.exists():
            partial.mkdir(parents=True)
        for name in FIELDS:
            array = getattr(scores, name)
            if isinstance(array, np.memmap):
                array.flush()
            else:
                np.save(partial / f"{name}.npy", array)
        final = self._folder(item)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(partial, final)
        marker = {"item": item.to_dict(), **(extra or {})}
        tmp = self._marker(item).with_suffix(".json.partial")
        tmp.write_text(json.dumps(marker, indent=1))
        os.replace(tmp, self._marker(item))

    def write(self, scores: SegmentScores, extra: dict | None = None) -> None:
        """Store an in-memory result (the per-shard writer of parallel scoring)."""
        self.commit(scores, extra)

    def read(self, item: WorkItem) -> SegmentScores:
        """The stored scores of a done ``item`` (memory-mapped, read-only)."""
        if not self.is_done(item):
            raise FileNotFoundError(f"{self.directory}: item {item.key} has not been scored")
        folder = self._folder(item)
        arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in FIELDS}
        return SegmentScores(item, **arrays)
