"""The ``gfssm`` commands of the DNA task: ``score genome``, ``score variants``, ``embed`` and
``eval dna-vep`` (batch jobs over a trained model) and the data steps
``data index|genbank|bgzip|snp2vcf``.

Paths are taken as the user typed them and resolved against the folder the command was run
in; bad input raises :class:`~gfssm.tasks.TaskInputError` naming the file and line.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from gfssm.tasks.dna.embed_command import embed_command
from gfssm.tasks.dna.jobs.common import command_line_hints, parse_aliases
from gfssm.tasks.dna.jobs.genome_job import (
    add_alias_argument,
    add_genome_arguments,
    make_genome_job,
)
from gfssm.tasks.dna.jobs.variant_job import add_variant_arguments, make_variant_job
from gfssm.tasks.dna.vep_command import vep_command
from gfssm.tasks.jobs import Log, TaskCommand, TaskInputError, existing_file, resolve_path


def _out_path(value: str, base_dir: Path) -> Path:
    path = Path(resolve_path(value, base_dir) or "")
    if path.is_dir():
        raise TaskInputError(f"--out {value}: is a folder; expected a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise TaskInputError(
            f"--out {value}: cannot create {path.parent} ({err.strerror})"
        ) from None
    return path


# gfssm data index ---------------------------------------------------------------------
def _add_index(p: argparse.ArgumentParser) -> None:
    p.add_argument("fasta", help="FASTA (plain, bgzip, gzip, bz2, xz, zst) or GenBank")
    p.add_argument(
        "--cache-dir", help="where indexes and conversions go when the FASTA's folder is read-only"
    )
    p.add_argument("--convert", action="store_true", help=argparse.SUPPRESS)  # now the default


def _index(args: argparse.Namespace, base_dir: Path, log: Log) -> int:
    from gfssm.tasks.dna import Genome

    genome = Genome(
        existing_file(args.fasta, base_dir, "FASTA"),
        cache_dir=resolve_path(args.cache_dir, base_dir),
    )
    log(f"{genome.path}: {len(genome.lengths)} contig(s), {genome.total_length:,} bases")
    for name, length in list(genome.lengths.items())[:20]:
        log(f"  {name}\t{length:,}")
    if len(genome.lengths) > 20:
        log(f"  ... and {len(genome.lengths) - 20} more")
    log(f"index: {genome.fai}" + (f" + {genome.gzi}" if genome.gzi else ""))
    return 0


# gfssm data genbank -------------------------------------------------------------------
def _add_genbank(p: argparse.ArgumentParser) -> None:
    p.add_argument("genbank", help="GenBank file (plain, gzip or xz)")
    p.add_argument("--out", required=True, help="output prefix: OUT.fa.gz and OUT.features.bed")


def _genbank(args: argparse.Namespace, base_dir: Path, log: Log) -> int:
    from gfssm.tasks.dna import Genome
    from gfssm.tasks.dna.genbank import genbank_to_fasta

    source = existing_file(args.genbank, base_dir, "GenBank file")
    out = _out_path(args.out, base_dir)
    with tempfile.TemporaryDirectory(prefix="gfssm-gb-") as tmp:
        fasta, bed = genbank_to_fasta(source, Path(tmp))
        target_fasta, target_bed = Path(f"{out}.fa.gz"), Path(f"{out}.features.bed")
        shutil.move(fasta, target_fasta)
        shutil.move(bed, target_bed)
    genome = Genome(target_fasta)
    log(f"{target_fasta} ({len(genome.lengths)} record(s), indexed) and {target_bed}")
    return 0


# gfssm data bgzip ---------------------------------------------------------------------
def _add_bgzip(p: argparse.ArgumentParser) -> None:
    p.add_argument("fasta", help="FASTA compressed with gzip, bzip2, xz or zstd")
    p.add_argument("--out", required=True, help="output .fa.gz")


def _bgzip(args: argparse.Namespace, base_dir: Path, log: Log) -> int:
    from gfssm.tasks.dna import Genome
    from gfssm.tasks.dna.fasta_format import convert_to_bgzip

    source = existing_file(args.fasta, base_dir, "FASTA")
    out = _out_path(args.out, base_dir)
    with tempfile.TemporaryDirectory(prefix="gfssm-bgzip-") as tmp:
        converted = convert_to_bgzip(source, Path(tmp), say=None)
        shutil.move(converted, out)
    Genome(out)
    log(f"{out}: bgzip FASTA with .fai and .gzi indexes")
    return 0


# gfssm data snp2vcf -------------------------------------------------------------------
def _add_snp2vcf(p: argparse.ArgumentParser) -> None:
    p.add_argument("snp", help="HISAT2 .snp file")
    p.add_argument("--fasta", required=True)
    p.add_argument("--out", required=True, help="output VCF")
    add_alias_argument(p)


def _snp2vcf(args: argparse.Namespace, base_dir: Path, log: Log) -> int:
    from gfssm.tasks.dna import Genome
    from gfssm.tasks.dna.snp_to_vcf import snp_to_vcf_lines, write_vcf

    fasta = existing_file(args.fasta, base_dir, "--fasta")
    snp = existing_file(args.snp, base_dir, ".snp file")
    out = _out_path(args.out, base_dir)
    with command_line_hints():
        genome = Genome(fasta, aliases=parse_aliases(args.alias))
        lines, problems = snp_to_vcf_lines(snp, genome)
    write_vcf(lines, genome, out, source=f"gfssm data snp2vcf {snp.name}")
    log(f"{out}: {len(lines)} variants" + (f"; {len(problems)} skipped" if problems else ""))
    for problem in problems[:10]:
        log(f"  skipped: {problem}")
    return 0


def dna_commands() -> list[TaskCommand]:
    return [
        TaskCommand(
            "score",
            "genome",
            "per-base log2 P and entropy of a genome (bgzip bedGraphs + Parquet)",
            add_genome_arguments,
            make_job=make_genome_job,
        ),
        TaskCommand(
            "score",
            "variants",
            "variant effects of a VCF/BCF (annotated VCF + .tbi, Parquet table)",
            add_variant_arguments,
            make_job=make_variant_job,
        ),
        embed_command(),
        vep_command(),
        TaskCommand(
            "data",
            "index",
            "index a FASTA (.fai, and .gzi for bgzip) and list contigs",
            _add_index,
            run=_index,
        ),
        TaskCommand(
            "data",
            "genbank",
            "GenBank -> bgzip FASTA + BED of features",
            _add_genbank,
            run=_genbank,
        ),
        TaskCommand(
            "data",
            "bgzip",
            "convert a gzip/bzip2/xz/zstd FASTA into indexed bgzip",
            _add_bgzip,
            run=_bgzip,
        ),
        TaskCommand(
            "data",
            "snp2vcf",
            "HISAT2 .snp (dbSNP) -> VCF against a FASTA",
            _add_snp2vcf,
            run=_snp2vcf,
        ),
    ]
