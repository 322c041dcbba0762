"""Merge per-item shards into the outputs of a scoring run.

- ``<prefix>.log2_prob.bedGraph.gz`` and ``<prefix>.entropy_bits.bedGraph.gz``: one line
  per scored base (bgzip, with a tabix index), N bases left out;
- ``<prefix>.windows.parquet``: per window of ``summary_window`` bases (a fixed grid on
  each contig): bases, scored bases, mean log2 probability, bits per base, mean entropy,
  GC and N fractions.

Everything is written to ``.partial`` files and renamed at the end, so a failed merge
never replaces earlier outputs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pysam

from gfssm.tasks.dna.scoring.plan import WorkItem
from gfssm.tasks.dna.scoring.shards import ShardStore
from gfssm.tasks.dna.tokens import C, G, N

TRACKS = ("log2_prob", "entropy_bits")
BLOCK = 1 << 20
SUMMARY_SCHEMA = pa.schema(
    [
        ("contig", pa.string()),
        ("start", pa.int64()),
        ("end", pa.int64()),
        ("bases", pa.int64()),
        ("scored", pa.int64()),
        ("mean_log2_prob", pa.float64()),
        ("bits_per_base", pa.float64()),
        ("mean_entropy_bits", pa.float64()),
        ("gc_fraction", pa.float64()),
        ("n_fraction", pa.float64()),
    ]
)


@dataclass(frozen=True)
class ScoreOutputs:
    bedgraphs: dict[str, Path]
    summary: Path


def output_paths(prefix: str | Path) -> ScoreOutputs:
    prefix = str(prefix)
    return ScoreOutputs(
        bedgraphs={t: Path(f"{prefix}.{t}.bedGraph.gz") for t in TRACKS},
        summary=Path(f"{prefix}.windows.parquet"),
    )


def _bedgraph_block(contig: str, first: int, values: np.ndarray) -> bytes:
    keep = np.flatnonzero(np.isfinite(values))
    if keep.size == 0:
        return b""
    starts = first + keep.astype(np.int64)
    names = pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(keep.size, np.int32)), pa.array([contig])
    ).cast(pa.string())
    table = pa.table(
        {"c": names, "s": starts, "e": starts + 1, "v": pc.round(pa.array(values[keep]), 4)}
    )
    sink = pa.BufferOutputStream()
    pacsv.write_csv(
        table, sink, pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
    )
    return sink.getvalue().to_pybytes()


class _WindowSummary:
    """Accumulates per-window sums over items given in genome order."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.rows: dict[tuple[str, int], np.ndarray] = {}
        self.starts: dict[tuple[str, int], int] = {}
        self.ends: dict[tuple[str, int], int] = {}
        self.done: list[dict] = []

    def add(self, contig: str, first: int, lp: np.ndarray, ent: np.ndarray, base: np.ndarray):
        pos = first + np.arange(lp.size)
        win = pos // self.window
        w0 = int(win[0])
        idx = win - w0
        scored = np.isfinite(lp)
        sums = np.stack(
            [
                np.bincount(idx),
                np.bincount(idx, weights=scored),
                np.bincount(idx, weights=np.where(scored, lp, 0.0)),
                np.bincount(idx, weights=np.where(np.isfinite(ent), ent, 0.0)),
                np.bincount(idx, weights=(base == C) | (base == G)),
                np.bincount(idx, weights=base == N),
            ],
            axis=1,
        )
        # positions are increasing, so each window's first and last positions are at the
        # first and last occurrence of its index
        present = np.flatnonzero(sums[:, 0] > 0)
        firsts = np.searchsorted(idx, present, side="left")
        lasts = np.searchsorted(idx, present, side="right") - 1
        for i, f, l in zip(present.tolist(), firsts.tolist(), lasts.tolist()):
            key = (contig, w0 + i)
            self.rows[key] = self.rows.get(key, 0) + sums[i]
            self.starts.setdefault(key, int(pos[f]))
            self.ends[key] = int(pos[l]) + 1

    def flush_before(self, contig: str, position: int | None) -> None:
        """Move windows that end before ``position`` of ``contig`` (all if None) to done."""
        for key in sorted(
            k
            for k in self.rows
            if position is None or k[0] != contig or (k[1] + 1) * self.window <= position
        ):
            total, scored, lp, ent, gc, n = self.rows.pop(key)
            self.done.append(
                {
                    "contig": key[0],
                    "start": self.starts.pop(key),
                    "end": self.ends.pop(key),
                    "bases": int(total),
                    "scored": int(scored),
                    "mean_log2_prob": lp / scored if scored else float("nan"),
                    "bits_per_base": -lp / scored if scored else float("nan"),
                    "mean_entropy_bits": ent / scored if scored else float("nan"),
                    "gc_fraction": gc / max(1.0, total - n),
                    "n_fraction": n / total,
                }
            )


def merge_shards(
    plan: Sequence[WorkItem],
    store: ShardStore,
    prefix: str | Path,
    *,
    summary_window: int = 1000,
) -> ScoreOutputs:
    """Write the bedGraphs and window summary of the done items of ``plan``."""
    missing = [item.key for item in plan if not store.is_done(item)]
    if missing:
        raise FileNotFoundError(
            f"{store.directory}: {len(missing)} item(s) not scored yet, e.g. {missing[0]}; "
            f"run the scoring (it resumes) before merging"
        )
    final = output_paths(prefix)
    # tabix wants the .gz suffix, so the partial files keep it
    partial = {t: Path(f"{prefix}.{t}.partial.bedGraph.gz") for t in final.bedgraphs}
    summary = _WindowSummary(summary_window)
    writer = pq.ParquetWriter(f"{final.summary}.partial", SUMMARY_SCHEMA)
    handles = {t: pysam.BGZFile(str(p), "wb", index=None) for t, p in partial.items()}
    try:
        for item in sorted(plan, key=lambda it: it.index):
            scores = store.read(item)
            for a in range(0, item.length, BLOCK):
                b = min(item.length, a + BLOCK)
                lp = np.asarray(scores.log2_prob[a:b])
                ent = np.asarray(scores.entropy_bits[a:b])
                for track, values in (("log2_prob", lp), ("entropy_bits", ent)):
                    handles[track].write(_bedgraph_block(item.contig, item.start + a, values))
                summary.add(item.contig, item.start + a, lp, ent, np.asarray(scores.base[a:b]))
                summary.flush_before(item.contig, item.start + b)
                if len(summary.done) >= 100_000:
                    writer.write_table(pa.Table.from_pylist(summary.done, SUMMARY_SCHEMA))
                    summary.done.clear()
        summary.flush_before("", None)
        if summary.done:
            writer.write_table(pa.Table.from_pylist(summary.done, SUMMARY_SCHEMA))
    finally:
        writer.close()
        for handle in handles.values():
            handle.close()
    for track, path in partial.items():
        pysam.tabix_index(str(path), preset="bed", force=True, keep_original=True)
        os.replace(f"{path}.tbi", f"{final.bedgraphs[track]}.tbi")
        os.replace(path, final.bedgraphs[track])
    os.replace(f"{final.summary}.partial", final.summary)
    return final
