"""``gfssm embed``: embeddings of genome regions of any length, per base or mean per
window, as Parquet or NumPy files with their coordinates.

Regions (BED lines, ``--region`` strings, or whole contigs) are grouped into work items of
about ``--item-bases`` bases; a region longer than that is one item of its own, streamed
in constant memory (:mod:`gfssm.tasks.dna.embedding`). An actor writes its item's files
straight into ``<out>/<fasta stem>.embeddings/`` (row group by row group, or through a
memory map, under a ``.partial`` name renamed when whole), so no process ever holds a
region's embeddings; its result is a small manifest. Like the FASTA, the output folder
must be reachable from every actor (one machine, or a shared file system).

Layout (coordinates 0-based, half-open, as in BED)::

    <out>/<stem>.embeddings/part-00000.parquet  rows: name, contig, start, end, embedding
    <out>/<stem>.embeddings/00000_<contig>_<start>_<end>.npy  (--format npy) (rows, D)
    <out>/<stem>.regions.tsv  one line per region: its file and rows, in input order

Per-base rows cover ``[pos, pos + 1)``; window rows ``[start + k*N, min(start + (k+1)*N,
end))``. The Parquet files together are one dataset (``pandas.read_parquet`` of the folder).
"""

from __future__ import annotations

import argparse
import errno
import functools
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gfssm.tasks.dna.embedding import (
    EmbeddingOptions,
    NpyWriter,
    ParquetWriter,
    check_streamable,
    embed_region,
)
from gfssm.tasks.dna.genome import ContigNameError, Genome
from gfssm.tasks.dna.jobs.common import (
    command_line_hints,
    job_fingerprint,
    open_genome,
    output_folder,
    parse_aliases,
)
from gfssm.tasks.dna.jobs.genome_job import add_alias_argument, output_stem
from gfssm.tasks.dna.regions import check_span, read_bed_records
from gfssm.tasks.jobs import BatchJob, Log, TaskInputError, WorkItem, existing_file

EMBED_VERSION = 1
ROW_OVERHEAD = {"parquet": 24, "npy": 0}  # bytes per row besides the values (coordinates)


@dataclass(frozen=True)
class Region:
    """Row ``index`` of the input: bases ``[start, end)`` of ``contig``, called ``name``."""

    index: int
    name: str
    contig: str
    start: int
    end: int

    def npy_name(self) -> str:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.contig).strip("_")[:60]
        return f"{self.index:05d}_{safe}_{self.start}_{self.end}.npy"


def read_bed_regions(path: Path, genome: Genome, shown: str) -> list[Region]:
    """Regions of a BED file (:func:`~gfssm.tasks.dna.regions.read_bed_records`), named by
    their 4th column, else by their coordinates."""
    return [
        Region(i, r.name or str(r.interval), r.interval.contig, r.interval.start, r.interval.end)
        for i, r in enumerate(read_bed_records(path, genome, shown=shown))
    ]


def parse_region(text: str, genome: Genome, index: int) -> Region:
    """``CONTIG`` (whole) or ``CONTIG:START-END`` (1-based, inclusive, as samtools)."""
    where = f"--region {text}"
    try:
        contig = genome.resolve(text, where=where)
        return Region(index, text, contig, 0, genome.lengths[contig])
    except ContigNameError:
        name, sep, span = text.rpartition(":")
        match = re.fullmatch(r"([\d,]+)-([\d,]+)", span) if sep else None
        if not match:
            raise
    contig = genome.resolve(name, where=where)
    first, last = (int(g.replace(",", "")) for g in match.groups())
    check_span(genome, contig, first - 1, last, f"{where} (1-based, inclusive)")
    return Region(index, text, contig, first - 1, last)


def group_regions(regions: list[Region], item_bases: int) -> list[list[Region]]:
    """Consecutive regions, up to ``item_bases`` bases per group (a longer region alone)."""
    groups: list[list[Region]] = []
    total = 0
    for region in regions:
        length = region.end - region.start
        if not groups or total + length > item_bases:
            groups.append([])
            total = 0
        groups[-1].append(region)
        total += length
    return groups


def estimate_bytes(
    regions: list[Region], options: EmbeddingOptions, dim: int, dtype: str, output_format: str
) -> int:
    """Bytes the output files will take (values plus coordinates; Parquet barely
    compresses floats)."""
    rows = sum(options.rows(r.end - r.start) for r in regions)
    per_row = dim * (2 if dtype == "float16" else 4) + ROW_OVERHEAD[output_format]
    return rows * per_row


def check_disk_space(needed: int, free: int, where: str) -> None:
    """One line when the outputs cannot fit: what they need, what is free, what helps."""
    if needed > free:
        raise TaskInputError(
            f"--out {where}: the embeddings need about {_size(needed)} but {_size(free)} is "
            f"free there; use --pool mean --window N (N times smaller), --dtype float16 "
            f"(half) or fewer regions"
        )


def _size(n: int) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


@dataclass
class EmbedJob(BatchJob):
    """Embed ``regions`` of ``genome``; files under ``prefix`` (``<out>/<fasta stem>``)."""

    genome: Genome
    bed: Path | None
    regions: list[Region]
    options: EmbeddingOptions
    output_format: str
    dtype: str
    dim: int
    prefix: Path
    item_bases: int = 200_000

    unit = "base"
    description = "embedding"

    @property
    def folder(self) -> Path:
        return Path(f"{self.prefix}.embeddings")

    def plan(self) -> list[WorkItem]:
        return [
            WorkItem(
                f"part-{i:05d}",
                {"part": i, "regions": [asdict(r) for r in group]},
                float(sum(r.end - r.start for r in group)),
            )
            for i, group in enumerate(group_regions(self.regions, self.item_bases))
        ]

    def fingerprint(self) -> dict[str, Any]:
        return job_fingerprint(
            "dna embed",
            self.genome,
            files={"bed": self.bed},
            digests={"regions": [asdict(r) for r in self.regions]},
            embed_version=EMBED_VERSION,
            layer=self.options.layer,
            window=self.options.window,
            format=self.output_format,
            dtype=self.dtype,
            item_bases=self.item_bases,
        )

    def shard_dir(self) -> Path:
        return Path(f"{self.prefix}.shards")

    def summary(self) -> str:
        layer = "final normed hidden state" if self.options.layer is None else None
        layer = layer or f"residual stream after block {self.options.layer}"
        window = self.options.window
        rows = "per base" if window is None else "mean per region" if window == 0 else None
        rows = rows or f"mean per {window}-base window"
        bases = sum(r.end - r.start for r in self.regions)
        return (
            f"embedding {len(self.regions)} region(s), {bases:,} bases: {layer} "
            f"(D={self.dim}), {rows}, {self.dtype} {self.output_format} in {self.folder}"
        )

    def make_worker(self, loaded) -> Callable[[dict[str, Any]], bytes]:
        model = loaded.model.eval()

        def work(payload: dict[str, Any]) -> bytes:
            regions = [Region(**r) for r in payload["regions"]]
            self.folder.mkdir(parents=True, exist_ok=True)
            try:
                files = self._write_part(model, int(payload["part"]), regions)
            except OSError as err:
                if err.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise TaskInputError(
                        f"disk full while writing {self.folder}: finished regions are kept; "
                        f"free some space and rerun the same command to resume"
                    ) from None
                raise
            return json.dumps(files).encode()

        return work

    def _tokens(self, contig: str, start: int, end: int) -> np.ndarray:
        return self.genome.tokens(contig, start, end)[0]

    def _write_part(self, model, part: int, regions: list[Region]) -> list[dict[str, Any]]:
        """Write one item's files; (region index, file, rows) of each region."""
        out: list[dict[str, Any]] = []
        parquet = None
        if self.output_format == "parquet":
            parquet = ParquetWriter(self.folder / f"part-{part:05d}.parquet", self.dim, self.dtype)
        for region in regions:
            rows = self.options.rows(region.end - region.start)
            path = self.folder / region.npy_name()
            npy = None if parquet else NpyWriter(path, rows, self.dim, self.dtype)
            tokens_of = functools.partial(self._tokens, region.contig)
            for batch in embed_region(model, tokens_of, region.start, region.end, self.options):
                if npy is not None:
                    npy.write(batch)
                else:
                    parquet.write(region.name, region.contig, batch)
            if npy is not None:
                npy.close()
            name = parquet.path.name if parquet else path.name
            out.append({"index": region.index, "file": name, "rows": rows})
        if parquet is not None:
            parquet.close()
        return out

    def finish(self, results: Callable[[str], bytes], log: Log) -> int:
        written: dict[int, dict[str, Any]] = {}
        for item in self.plan():
            for entry in json.loads(results(item.key)):
                written[entry["index"]] = entry
        files = {e["file"] for e in written.values()}
        for name in sorted(files):
            if not (self.folder / name).is_file():
                raise TaskInputError(
                    f"{self.folder / name} is missing (deleted after it was written?); delete "
                    f"{self.shard_dir()} and rerun the same command"
                )
        stale = [p for p in self.folder.glob("*") if p.is_file() and p.name not in files]
        for path in stale:  # another run's files would join a Parquet dataset read as a folder
            path.unlink()
        table = Path(f"{self.prefix}.regions.tsv")
        partial = table.with_name(table.name + ".partial")
        with partial.open("w") as handle:
            handle.write("index\tname\tcontig\tstart\tend\trows\tfile\n")
            for r in self.regions:
                e = written[r.index]
                handle.write(
                    f"{r.index}\t{r.name}\t{r.contig}\t{r.start}\t{r.end}\t{e['rows']}\t"
                    f"{self.folder.name}/{e['file']}\n"
                )
        os.replace(partial, table)
        rows = sum(e["rows"] for e in written.values())
        log(f"embeddings: {self.folder} ({len(files)} {self.output_format} file(s), {rows:,} rows)")
        log(f"regions and their files: {table}")
        return 0


def add_embed_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fasta", required=True, help="FASTA (any compression) or GenBank")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--bed", help="BED of regions (4th column: name); default: every contig")
    parser.add_argument(
        "--region",
        action="append",
        default=[],
        metavar="CONTIG[:START-END]",
        help="a region, 1-based inclusive as samtools (repeatable; with or instead of --bed)",
    )
    parser.add_argument(
        "--pool", choices=("none", "mean"), default="none", help="one row per base, or means"
    )
    parser.add_argument(
        "--window", type=int, help="with --pool mean: bases per window (default: whole region)"
    )
    parser.add_argument("--format", choices=("parquet", "npy"), default="parquet")
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32")
    parser.add_argument(
        "--layer",
        default="final",
        help="'final' (normed hidden state the LM head reads) or block K (1..n_layer)",
    )
    parser.add_argument(
        "--item-bases",
        type=int,
        default=200_000,
        help="regions are grouped into work items of about this many bases (the unit of "
        "parallel work and of resuming); a longer region is one item, streamed whole",
    )
    parser.add_argument("--piece", type=int, default=32768, help=argparse.SUPPRESS)
    add_alias_argument(parser)


def _options(args: argparse.Namespace) -> EmbeddingOptions:
    if args.pool == "none" and args.window is not None:
        raise TaskInputError(f"--window {args.window}: only with --pool mean")
    if args.window is not None and args.window < 1:
        raise TaskInputError(f"--window {args.window}: expected a positive number of bases")
    if args.item_bases < 1 or args.piece < 1:
        raise TaskInputError("--item-bases and --piece: expected positive numbers of bases")
    layer = None
    if str(args.layer) != "final":
        try:
            layer = int(args.layer)
        except ValueError:
            raise TaskInputError(
                f"--layer {args.layer}: expected 'final' or a block number"
            ) from None
    window = None if args.pool == "none" else (args.window or 0)
    return EmbeddingOptions(layer=layer, window=window, piece_length=args.piece)


def make_embed_job(args: argparse.Namespace, base_dir: Path, loaded) -> EmbedJob:
    """The job of ``gfssm embed``; every input is checked here, in the driver."""
    options = _options(args)
    check_streamable(loaded.model, options.layer)
    fasta = existing_file(args.fasta, base_dir, "--fasta")
    bed = existing_file(args.bed, base_dir, "--bed") if args.bed else None
    with command_line_hints():
        genome = open_genome(fasta, loaded.settings, parse_aliases(args.alias))
        regions = read_bed_regions(bed, genome, f"--bed {args.bed}") if bed else []
        for text in args.region:
            regions.append(parse_region(text, genome, len(regions)))
    if bed is not None and not regions:
        raise TaskInputError(f"--bed {args.bed}: no regions; nothing to embed")
    if not regions:
        regions = [Region(i, c, c, 0, n) for i, (c, n) in enumerate(genome.lengths.items())]
    out = output_folder(args.out, base_dir)
    dim = int(loaded.config.d_model)
    job = EmbedJob(
        genome=genome,
        bed=bed,
        regions=regions,
        options=options,
        output_format=args.format,
        dtype=args.dtype,
        dim=dim,
        prefix=out / output_stem(fasta),
        item_bases=args.item_bases,
    )
    needed = estimate_bytes(regions, options, dim, args.dtype, args.format)
    # a resumed run already holds part of it; .partial files are rewritten
    done = sum(p.stat().st_size for p in job.folder.glob("*") if p.suffix != ".partial")
    check_disk_space(needed - done, shutil.disk_usage(out).free, args.out)
    return job
