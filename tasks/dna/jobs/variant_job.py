"""``gfssm score variants``: ``log2 P(alt window) - log2 P(ref window)`` of every ALT allele
of a VCF/BCF, into an annotated VCF (bgzip + ``.tbi``) and a Parquet table.

The VCF is read in the driver (records checked against the FASTA, windows cut); a work item
is a group of records with their windows, so actors need neither file. The result of an
item is a JSON list of its scores; the writer is the single-process path's
(:class:`~gfssm.tasks.dna.variants.VariantWriter`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gfssm.tasks.dna.genome import Genome
from gfssm.tasks.dna.jobs.common import (
    command_line_hints,
    job_fingerprint,
    open_genome,
    output_folder,
    parse_aliases,
)
from gfssm.tasks.dna.jobs.genome_job import add_alias_argument
from gfssm.tasks.dna.variants import (
    VariantRecord,
    VariantScore,
    VariantWriter,
    contig_lengths,
    read_variants,
    score_variant_batch,
)
from gfssm.tasks.dna.variants.records import REF_MISMATCH, UNSUPPORTED_ALLELE, Haplotypes
from gfssm.tasks.jobs import BatchJob, Log, TaskInputError, WorkItem, existing_file

SHARD_SIZE = 256


def variant_prefix(out: Path) -> Path:
    """``x.vcf.gz`` / ``x.vcf`` / ``x`` -> ``x`` (outputs: ``x.vcf.gz``, ``x.variants.parquet``)."""
    name = out.name
    for suffix in (".gz", ".bgz", ".vcf", ".bcf"):
        name = name.removesuffix(suffix)
    return out.with_name(name)


def record_to_dict(record: VariantRecord) -> dict[str, Any]:
    return asdict(record)


def record_from_dict(values: dict[str, Any]) -> VariantRecord:
    values = dict(values)
    values["alts"] = tuple(values["alts"])
    values["alleles"] = [Haplotypes(**h) for h in values["alleles"]]
    return VariantRecord(**values)


@dataclass
class VariantScoreJob(BatchJob):
    """Score the records of ``vcf`` against ``genome``; outputs at ``prefix``."""

    genome: Genome
    vcf: Path
    prefix: Path
    flank: int = 512
    reverse_complement: bool = True
    shard_size: int = SHARD_SIZE
    # read in the driver by make_variant_job; never pickled to the actors
    records: list[VariantRecord] | None = field(default=None, repr=False)

    unit = "variant"
    description = "scoring variants"

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "records": None}

    def _records(self) -> list[VariantRecord]:
        if self.records is None:
            self.records = list(read_variants(self.vcf, self.genome, flank=self.flank))
        return self.records

    def _groups(self) -> list[list[VariantRecord]]:
        records = self._records()
        return [records[i : i + self.shard_size] for i in range(0, len(records), self.shard_size)]

    def plan(self) -> list[WorkItem]:
        return [
            WorkItem(f"{i:06d}", {"records": [record_to_dict(r) for r in g]}, float(len(g)))
            for i, g in enumerate(self._groups())
        ]

    def fingerprint(self) -> dict[str, Any]:
        return job_fingerprint(
            "dna score variants",
            self.genome,
            files={"vcf": self.vcf},
            flank=self.flank,
            reverse_complement=self.reverse_complement,
            shard_size=self.shard_size,
        )

    def shard_dir(self) -> Path:
        return Path(f"{self.prefix}.shards")

    def make_worker(self, loaded) -> Callable[[dict[str, Any]], bytes]:
        model, reverse_complement = loaded.model, self.reverse_complement

        def score(payload: dict[str, Any]) -> bytes:
            records = [record_from_dict(r) for r in payload["records"]]
            scores = score_variant_batch(model, records, reverse_complement=reverse_complement)
            return json.dumps([asdict(s) for s in scores]).encode()

        return score

    def finish(self, results: Callable[[str], bytes], log: Log) -> int:
        writer = VariantWriter(
            self.vcf, self.prefix, contig_lengths(self.genome), cache_dir=self.genome.cache_dir
        )
        try:
            for i, group in enumerate(self._groups()):
                scores = [VariantScore(**s) for s in json.loads(results(f"{i:06d}"))]
                writer.write(group, scores)
        except BaseException:
            writer.abort()
            raise
        outputs = writer.close()
        counts = ", ".join(f"{k} {v}" for k, v in sorted(outputs.counts.items()))
        log(f"ALT alleles: {counts or 'none'}")
        if outputs.counts.get(UNSUPPORTED_ALLELE):
            log(
                f"  {UNSUPPORTED_ALLELE}: symbolic (<DEL>...), * or missing ALTs are not scored "
                f"(see the 'status' column of the table)"
            )
        if outputs.counts.get(REF_MISMATCH):
            log(f"  {REF_MISMATCH}: REF differs from the FASTA (see the 'detail' column)")
        index = " (+ .tbi)" if outputs.index else " (not indexed: input not sorted)"
        log(f"annotated VCF: {outputs.vcf}{index}\ntable: {outputs.table}")
        return 0


def add_variant_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fasta", required=True, help="FASTA (any compression) or GenBank")
    parser.add_argument(
        "--vcf", required=True, help="VCF (plain, gzip, bgzip, bz2, xz, zst) or BCF"
    )
    parser.add_argument("--out", required=True, help="output: OUT.vcf.gz and OUT.variants.parquet")
    parser.add_argument("--flank", type=int, default=512, help="bases on each side")
    parser.add_argument(
        "--forward-only", action="store_true", help="skip the reverse-complement strand"
    )
    add_alias_argument(parser)


def make_variant_job(args: argparse.Namespace, base_dir: Path, loaded) -> VariantScoreJob:
    """The job of ``gfssm score variants``; the VCF is read and checked here, in the driver."""
    if args.flank < 0:
        raise TaskInputError(f"--flank {args.flank}: expected >= 0")
    fasta = existing_file(args.fasta, base_dir, "--fasta")
    vcf = existing_file(args.vcf, base_dir, "--vcf")
    out = Path(args.out)
    prefix = variant_prefix(output_folder(str(out.parent), base_dir) / out.name)
    with command_line_hints():
        genome = open_genome(fasta, loaded.settings, parse_aliases(args.alias))
        job = VariantScoreJob(
            genome=genome,
            vcf=vcf,
            prefix=prefix,
            flank=args.flank,
            reverse_complement=not args.forward_only,
        )
        job._records()
    return job
