"""The DNA commands: ``gfssm score genome|variants`` and ``gfssm data index|genbank|bgzip|
snp2vcf`` (thin wrappers over :mod:`gfssm.tasks.dna`)."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from gfssm.pipelines.errors import GFSSMUserError


class DataError(GFSSMUserError, ValueError):
    pass


def parse_aliases(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items or []:
        name, sep, target = item.partition("=")
        if not sep or not name or not target:
            raise DataError(f"--alias {item!r}: expected NAME_IN_FILE=FASTA_CONTIG")
        out[name] = target
    return out


@contextmanager
def local_model(ref: str, tracking_uri: str | None):
    """A model directory for ``--model`` (downloads live as long as the command)."""
    from gfssm.pipelines.model_ref import resolve_model

    with tempfile.TemporaryDirectory(prefix="gfssm-model-") as tmp:
        yield resolve_model(ref, tracking_uri=tracking_uri, cache=Path(tmp))


def _pool(args: argparse.Namespace):
    from gfssm.pipelines.batch import PoolSpec

    if args.actors < 1:
        raise DataError(f"--actors {args.actors}: expected >= 1")
    return PoolSpec(args.actors, args.cpus_per_actor, args.gpus_per_actor)


def _connect(args: argparse.Namespace, log) -> None:
    from gfssm.pipelines.ray_session import connect

    dashboard = connect(args.address)
    if dashboard:
        log(f"Ray dashboard: {dashboard}")


def _existing(path: str, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"{what} {path}: no such file")
    return p


def score_genome_command(args: argparse.Namespace, log: Callable[[str], None]) -> int:
    from gfssm.pipelines.score import score_genome

    fasta = _existing(args.fasta, "--fasta")
    bed = _existing(args.regions, "--regions") if args.regions else None
    with local_model(args.model, args.tracking_uri) as model_dir:
        outputs = score_genome(
            model_dir,
            fasta,
            Path(args.out),
            regions_bed=bed,
            segment_length=args.segment,
            warmup=args.warmup,
            reverse_complement=args.reverse_complement,
            summary_window=args.summary_window,
            aliases=parse_aliases(args.alias),
            pool=_pool(args),
            log=log,
            connect=lambda: _connect(args, log),
        )
    for track, path in outputs.bedgraphs.items():
        log(f"{track}: {path}")
    log(f"per-window summary: {outputs.summary}")
    return 0


def score_variants_command(args: argparse.Namespace, log: Callable[[str], None]) -> int:
    from gfssm.pipelines.score import score_variants

    fasta = _existing(args.fasta, "--fasta")
    vcf = _existing(args.vcf, "--vcf")
    with local_model(args.model, args.tracking_uri) as model_dir:
        outputs = score_variants(
            model_dir,
            fasta,
            vcf,
            Path(args.out),
            flank=args.flank,
            reverse_complement=not args.forward_only,
            aliases=parse_aliases(args.alias),
            pool=_pool(args),
            log=log,
            connect=lambda: _connect(args, log),
        )
    counts = ", ".join(f"{k} {v}" for k, v in sorted(outputs.counts.items()))
    log(f"variants: {counts}")
    log(f"annotated VCF: {outputs.vcf}\ntable: {outputs.table}")
    return 0


def add_pool_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cpus-per-actor",
        type=float,
        default=None,
        help="default: the cluster's CPUs split between the actors",
    )
    parser.add_argument(
        "--gpus-per-actor",
        type=float,
        default=None,
        help="default: 1 when the cluster has GPUs, else 0",
    )


def add_score_options(genome: argparse.ArgumentParser, variants: argparse.ArgumentParser):
    for p in (genome, variants):
        p.add_argument(
            "--alias",
            action="append",
            default=[],
            metavar="NAME=CONTIG",
            help="contig name in the BED/VCF = contig name in the FASTA (repeatable)",
        )
        add_pool_options(p)
    genome.add_argument(
        "--warmup", type=int, default=0, help="bases of context read before each segment"
    )
    genome.add_argument(
        "--reverse-complement",
        action="store_true",
        help="also score the reverse strand and average per base",
    )
    genome.add_argument("--summary-window", type=int, default=1000)
    variants.add_argument("--flank", type=int, default=512, help="bases on each side")
    variants.add_argument(
        "--forward-only", action="store_true", help="skip the reverse-complement strand"
    )


# gfssm data ---------------------------------------------------------------------------
def _index(args: argparse.Namespace, log) -> int:
    from gfssm.tasks.dna import Genome

    genome = Genome(
        _existing(args.fasta, "FASTA"), cache_dir=args.cache_dir, convert_compressed=args.convert
    )
    log(f"{genome.path}: {len(genome.lengths)} contig(s), {sum(genome.lengths.values()):,} bases")
    for name, length in list(genome.lengths.items())[:20]:
        log(f"  {name}\t{length:,}")
    log(f"index: {genome.fai}" + (f" + {genome.gzi}" if genome.gzi else ""))
    return 0


def _genbank(args: argparse.Namespace, log) -> int:
    from gfssm.tasks.dna import Genome
    from gfssm.tasks.dna.genbank import genbank_to_fasta

    source = _existing(args.genbank, "GenBank file")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gfssm-gb-") as tmp:
        fasta, bed = genbank_to_fasta(source, Path(tmp))
        target_fasta, target_bed = Path(f"{out}.fa.gz"), Path(f"{out}.features.bed")
        shutil.move(fasta, target_fasta)
        shutil.move(bed, target_bed)
    genome = Genome(target_fasta)
    log(f"{target_fasta} ({len(genome.lengths)} record(s), indexed) and {target_bed}")
    return 0


def _bgzip(args: argparse.Namespace, log) -> int:
    from gfssm.tasks.dna import Genome
    from gfssm.tasks.dna.fasta_format import convert_to_bgzip

    source = _existing(args.fasta, "FASTA")
    with tempfile.TemporaryDirectory(prefix="gfssm-bgzip-") as tmp:
        converted = convert_to_bgzip(source, Path(tmp))
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(converted, args.out)
    Genome(args.out)
    log(f"{args.out}: bgzip FASTA with .fai and .gzi indexes")
    return 0


def _snp2vcf(args: argparse.Namespace, log) -> int:
    from gfssm.tasks.dna import Genome
    from gfssm.tasks.dna.snp_to_vcf import snp_to_vcf_lines, write_vcf

    genome = Genome(_existing(args.fasta, "--fasta"), aliases=parse_aliases(args.alias))
    lines, problems = snp_to_vcf_lines(_existing(args.snp, ".snp file"), genome)
    write_vcf(lines, genome, Path(args.out), source=f"gfssm data snp2vcf {Path(args.snp).name}")
    log(f"{args.out}: {len(lines)} variants" + (f"; {len(problems)} skipped" if problems else ""))
    for problem in problems[:10]:
        log(f"  skipped: {problem}")
    return 0


def add_data_commands(sub) -> None:
    """``gfssm data`` subcommands for DNA preparation."""
    p = sub.add_parser("index", help="index a FASTA (.fai, and .gzi for bgzip) and list contigs")
    p.add_argument("fasta")
    p.add_argument("--cache-dir", help="where indexes go when the FASTA's folder is read-only")
    p.add_argument(
        "--convert",
        action="store_true",
        help="convert a gzip/xz/bzip2 FASTA into bgzip (in the cache) first",
    )
    p.set_defaults(handler=_index)
    p = sub.add_parser("genbank", help="GenBank -> bgzip FASTA + BED of features")
    p.add_argument("genbank")
    p.add_argument("--out", required=True, help="output prefix: OUT.fa.gz and OUT.features.bed")
    p.set_defaults(handler=_genbank)
    p = sub.add_parser("bgzip", help="convert a gzip/xz/bzip2 FASTA into indexed bgzip")
    p.add_argument("fasta")
    p.add_argument("--out", required=True, help="output .fa.gz")
    p.set_defaults(handler=_bgzip)
    p = sub.add_parser("snp2vcf", help="HISAT2 .snp (dbSNP) -> VCF against a FASTA")
    p.add_argument("snp")
    p.add_argument("--fasta", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--alias", action="append", default=[], metavar="NAME=CONTIG")
    p.set_defaults(handler=_snp2vcf)
