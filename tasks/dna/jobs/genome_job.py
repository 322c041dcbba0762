"""``gfssm score genome``: per-base log2 P and entropy of every base of a FASTA (or of the
regions of a BED file), as bgzip + tabix bedGraphs, bigWigs with a track-hub ``trackDb.txt``
and a per-window Parquet summary.

One work item is one contig, region or segment (:func:`~gfssm.tasks.dna.scoring.plan_scoring`);
its result is an ``.npz`` of the item's per-base arrays. The merge is the single-process
path's (:func:`~gfssm.tasks.dna.scoring.merge_shards`), so the outputs are byte for byte
those of :func:`~gfssm.tasks.dna.scoring.score_genome`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gfssm.tasks.dna.embedding import check_streamable
from gfssm.tasks.dna.genome import Genome
from gfssm.tasks.dna.jobs.common import (
    command_line_hints,
    job_fingerprint,
    npz_arrays,
    npz_bytes,
    open_genome,
    output_folder,
    parse_aliases,
)
from gfssm.tasks.dna.regions import read_bed
from gfssm.tasks.dna.scoring import (
    ScoringOptions,
    SegmentScores,
    merge_shards,
    plan_scoring,
    score_work_item,
)
from gfssm.tasks.dna.scoring import WorkItem as ScoringItem
from gfssm.tasks.dna.scoring.genome_scoring import SCORES_VERSION
from gfssm.tasks.jobs import BatchJob, Log, TaskInputError, WorkItem, existing_file

FASTA_SUFFIXES = (".gz", ".bgz", ".bz2", ".xz", ".zst", ".fa", ".fasta", ".fna")
GENBANK_SUFFIXES = (".gb", ".gbk", ".gbff", ".genbank")


def output_stem(path: Path) -> str:
    """``genome.fa.gz`` -> ``genome``: the outputs' file name prefix."""
    name = path.name
    for suffix in (*FASTA_SUFFIXES, *GENBANK_SUFFIXES):
        name = name.removesuffix(suffix)
    return name or "genome"


@dataclass
class GenomeScoreJob(BatchJob):
    """Score ``items`` of ``genome``; outputs at ``prefix`` (``<out>/<fasta stem>``)."""

    genome: Genome
    regions: Path | None
    items: list[ScoringItem]
    options: ScoringOptions
    prefix: Path
    summary_window: int = 1000

    unit = "base"
    description = "scoring"

    def plan(self) -> list[WorkItem]:
        passes = 2 if self.options.reverse_complement else 1
        return [WorkItem(i.key, i.to_dict(), float(i.length * passes)) for i in self.items]

    def fingerprint(self) -> dict[str, Any]:
        return job_fingerprint(
            "dna score genome",
            self.genome,
            files={"regions": self.regions},
            digests={"items": [i.to_dict() for i in self.items]},
            scores_version=SCORES_VERSION,
            options=asdict(self.options),
        )

    def shard_dir(self) -> Path:
        return Path(f"{self.prefix}.shards")

    def make_worker(self, loaded) -> Callable[[dict[str, Any]], bytes]:
        model, genome, options = loaded.model, self.genome, self.options

        def score(payload: dict[str, Any]) -> bytes:
            s = score_work_item(model, genome, ScoringItem.from_dict(payload), options)
            return npz_bytes(log2_prob=s.log2_prob, entropy_bits=s.entropy_bits, base=s.base)

        return score

    def finish(self, results: Callable[[str], bytes], log: Log) -> int:
        self.prefix.parent.mkdir(parents=True, exist_ok=True)
        outputs = merge_shards(
            self.items,
            _Results(results, self.shard_dir()),
            self.prefix,
            chrom_sizes=self.genome.lengths,
            summary_window=self.summary_window,
            reverse_complement=self.options.reverse_complement,
        )
        for track, path in outputs.bedgraphs.items():
            log(f"{track}: {path} (+ .tbi), {outputs.bigwigs[track].name}")
        log(f"genome browser tracks (bigWig): {outputs.trackdb}")
        log(f"per-window summary: {outputs.summary}")
        return 0


class _Results:
    """The stored results of a job as the store that :func:`merge_shards` reads."""

    def __init__(self, results: Callable[[str], bytes], directory: Path) -> None:
        self.results = results
        self.directory = directory

    def is_done(self, item: ScoringItem) -> bool:
        return True

    def read(self, item: ScoringItem) -> SegmentScores:
        arrays = npz_arrays(self.results(item.key))
        return SegmentScores(item, arrays["log2_prob"], arrays["entropy_bits"], arrays["base"])


def add_genome_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fasta", required=True, help="FASTA (any compression) or GenBank")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--regions", help="BED of regions to score (default: every contig)")
    parser.add_argument(
        "--segment",
        type=int,
        default=None,
        help="cut contigs into segments of this many bases, scored in parallel",
    )
    parser.add_argument(
        "--warmup", type=int, default=0, help="bases of context read before each segment"
    )
    parser.add_argument(
        "--reverse-complement",
        action="store_true",
        help="also score the reverse strand and average per base",
    )
    parser.add_argument("--summary-window", type=int, default=1000, help="bases per summary row")
    add_alias_argument(parser)


def add_alias_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--alias",
        action="append",
        default=[],
        metavar="NAME=CONTIG",
        help="contig name in the BED/VCF = contig name in the FASTA (repeatable)",
    )


def make_genome_job(args: argparse.Namespace, base_dir: Path, loaded) -> GenomeScoreJob:
    """The job of ``gfssm score genome``; every input is checked here, in the driver."""
    check_streamable(loaded.model, command="gfssm score genome")
    if args.segment is not None and args.segment < 1:
        raise TaskInputError(f"--segment {args.segment}: expected a positive number of bases")
    if args.warmup < 0:
        raise TaskInputError(f"--warmup {args.warmup}: expected >= 0")
    if args.summary_window < 1:
        raise TaskInputError(f"--summary-window {args.summary_window}: expected >= 1")
    fasta = existing_file(args.fasta, base_dir, "--fasta")
    regions = existing_file(args.regions, base_dir, "--regions") if args.regions else None
    with command_line_hints():
        genome = open_genome(fasta, loaded.settings, parse_aliases(args.alias))
        intervals = read_bed(regions, genome) if regions else None
    items = plan_scoring(genome, intervals, segment_length=args.segment, warmup=args.warmup)
    if not items:
        raise TaskInputError(f"--regions {args.regions}: no regions; nothing to score")
    out = output_folder(args.out, base_dir)
    return GenomeScoreJob(
        genome=genome,
        regions=regions,
        items=items,
        options=ScoringOptions(reverse_complement=args.reverse_complement),
        prefix=out / output_stem(fasta),
        summary_window=args.summary_window,
    )
