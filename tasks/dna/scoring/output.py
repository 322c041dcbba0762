"""Merge per-item shards into the outputs of a scoring run.

- ``<prefix>.log2_prob.bedGraph.gz`` and ``<prefix>.entropy_bits.bedGraph.gz``: one line
  per scored base (bgzip, with a tabix index), N bases left out;
- ``<prefix>.log2_prob.bw`` and ``<prefix>.entropy_bits.bw``: the same per-base values as
  bigWig (float32, unrounded), for genome browsers; the header holds every contig of the
  FASTA index with its length, in byte order of the names (as ``bedGraphToBigWig`` sorts);
- ``<prefix>.trackDb.txt``: a track-hub stanza per bigWig (``bigDataUrl`` relative to it);
- ``<prefix>.windows.parquet``: per window of ``summary_window`` bases (a fixed grid on
  each contig): bases, scored bases, mean log2 probability, bits per base, mean entropy,
  GC and N fractions.

Everything is written to ``.partial`` files and renamed at the end, so a failed merge
never replaces earlier outputs.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pyBigWig
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


#: per track: short label (at most 17 characters), what the value is, colour (R,G,B)
TRACK_LABELS = {
    "log2_prob": ("GFSSM log2 P", "log2 P(base | upstream)", "31,119,180"),
    "entropy_bits": ("GFSSM entropy", "entropy of the prediction (bits)", "214,39,40"),
}


@dataclass(frozen=True)
class ScoreOutputs:
    bedgraphs: dict[str, Path]
    summary: Path
    bigwigs: dict[str, Path]
    trackdb: Path


def output_paths(prefix: str | Path) -> ScoreOutputs:
    prefix = str(prefix)
    return ScoreOutputs(
        bedgraphs={t: Path(f"{prefix}.{t}.bedGraph.gz") for t in TRACKS},
        summary=Path(f"{prefix}.windows.parquet"),
        bigwigs={t: Path(f"{prefix}.{t}.bw") for t in TRACKS},
        trackdb=Path(f"{prefix}.trackDb.txt"),
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
    chrom_sizes: Mapping[str, int],
    summary_window: int = 1000,
    reverse_complement: bool = False,
) -> ScoreOutputs:
    """Write the bedGraphs, bigWigs, trackDb and window summary of the done items of
    ``plan``. ``chrom_sizes``: every contig of the FASTA index and its length (the bigWig
    header; ``Genome.lengths``); ``reverse_complement`` only words the track labels."""
    missing = [item.key for item in plan if not store.is_done(item)]
    if missing:
        raise FileNotFoundError(
            f"{store.directory}: {len(missing)} item(s) not scored yet, e.g. {missing[0]}; "
            f"run the scoring (it resumes) before merging"
        )
    for item in plan:
        if item.end > chrom_sizes.get(item.contig, -1):
            raise ValueError(
                f"item {item.key} ends at {item.end}, past contig {item.contig!r} of "
                f"length {chrom_sizes.get(item.contig)} in chrom_sizes"
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
    partial_bw = {t: Path(f"{prefix}.{t}.partial.bw") for t in final.bigwigs}
    _write_bigwigs(plan, store, partial_bw, chrom_sizes)
    for track, path in partial_bw.items():
        os.replace(path, final.bigwigs[track])
    trackdb = Path(f"{final.trackdb}.partial")
    trackdb.write_text(_trackdb(final, reverse_complement))
    os.replace(trackdb, final.trackdb)
    os.replace(f"{final.summary}.partial", final.summary)
    return final


def _finite_runs(values: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(offset, values) of each run of consecutive finite values (N bases are gaps)."""
    finite = np.isfinite(values)
    if finite.all():
        yield 0, values
        return
    bounds = np.concatenate(
        [[0], np.flatnonzero(np.diff(finite.view(np.int8))) + 1, [values.size]]
    ).tolist()
    for a, b in itertools.pairwise(bounds):
        if finite[a]:
            yield a, values[a:b]


def _write_bigwigs(
    plan: Sequence[WorkItem],
    store: ShardStore,
    paths: Mapping[str, Path],
    chrom_sizes: Mapping[str, int],
) -> None:
    """One bigWig per track, streamed from the shards block by block, contigs in byte order
    of their names (as UCSC's tools sort them) and positions increasing within each contig.
    Our side holds one block; libBigWig keeps its zoom summaries (about 4 bytes per scored
    base) until it closes the file, so the tracks are written one after the other."""
    header = sorted(((c, int(n)) for c, n in chrom_sizes.items()), key=lambda cn: cn[0].encode())
    order = sorted(plan, key=lambda it: (it.contig.encode(), it.start))
    for track, path in paths.items():
        handle = pyBigWig.open(str(path), "w")
        try:
            handle.addHeader(header, maxZooms=10)
            for item in order:
                values_of = getattr(store.read(item), track)
                for a in range(0, item.length, BLOCK):
                    values = np.asarray(values_of[a : min(item.length, a + BLOCK)], np.float32)
                    for offset, run in _finite_runs(values):
                        handle.addEntries(
                            item.contig, item.start + a + offset, values=run, span=1, step=1
                        )
        finally:
            handle.close()


def _trackdb(outputs: ScoreOutputs, reverse_complement: bool) -> str:
    """Track-hub stanzas naming the bigWigs (``bigDataUrl`` relative to the trackDb)."""
    stem = outputs.trackdb.name.removesuffix(".trackDb.txt")
    name = re.sub(r"[^A-Za-z0-9_]+", "_", stem).strip("_") or "gfssm"
    if not name[0].isalpha():
        name = f"gfssm_{name}"
    strands = "both strands averaged" if reverse_complement else "forward strand"
    stanzas = []
    for track, path in outputs.bigwigs.items():
        short, what, color = TRACK_LABELS[track]
        stanzas.append(
            "\n".join(
                [
                    f"track {name}_{track}",
                    "type bigWig",
                    f"bigDataUrl {quote(path.name)}",
                    f"shortLabel {short}",
                    f"longLabel {f'GFSSM {what}, {strands}: {stem}'[:76]}",
                    "visibility full",
                    "autoScale on",
                    "alwaysZero on",
                    f"color {color}",
                    "maxHeightPixels 100:48:8",
                ]
            )
        )
    return "\n\n".join(stanzas) + "\n"
