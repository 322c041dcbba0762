"""``gfssm eval dna-vep``: a zero-shot variant-effect benchmark on a genome's annotation.

Every single-base change in the annotated CDS of the evaluated contigs is labelled
(synonymous, missense, stop gained, ...; :mod:`gfssm.tasks.dna.vep.effects`) and scored by
the model and by the order-k Markov baseline; the report is the AUROC of each score for
stop-gained vs synonymous and missense vs synonymous, and the mean entropy per codon
position. By default only the contigs the model held out of training are evaluated.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gfssm.tasks.dna.jobs.common import cache_dir_of, command_line_hints, output_folder
from gfssm.tasks.dna.settings import DnaSettings
from gfssm.tasks.jobs import TaskCommand, TaskInputError, existing_file

DESCRIPTION = (
    "Zero-shot variant effects on real annotation: every single-base change in the CDS of "
    "a GenBank file (or FASTA + GFF3) is labelled synonymous, missense, stop_gained, "
    "stop_lost, stop_retained or start_codon (the record's genetic code) and scored with "
    "the model and the order-k Markov baseline as log2 P(alt) - log2 P(ref) at its "
    "position, averaged over both strands (a damaging change should score lower), and with "
    "a codon score: that plus the change's effect on the predictions of the rest of its "
    "codon on each strand, and with an amino-acid score: log2 P(alt amino acid) - log2 "
    "P(ref amino acid), each the sum of its codons' probabilities at the codon (0 for a "
    "synonymous change). Reports "
    "the AUROC of stop_gained vs synonymous and missense vs synonymous for each, and the "
    "mean entropy at codon positions 1, 2, 3. Only contigs the model never trained on are "
    "evaluated: by default the model's held-out contigs (task.val_contigs). Writes "
    "OUT/variants.parquet (one row per variant) and OUT/summary.json."
)


def add_vep_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--genbank", help="GenBank file with CDS features (plain, gzip or xz)")
    parser.add_argument("--fasta", help="FASTA of the genome, with --gff instead of --genbank")
    parser.add_argument("--gff", help="GFF3 with CDS lines (plain or gzip), with --fasta")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--contigs",
        help="comma-separated contigs to evaluate, or 'all' (default: the contigs the model "
        "held out of training, its task.val_contigs)",
    )
    parser.add_argument(
        "--allow-train-contigs",
        action="store_true",
        help="evaluate contigs the model trained on too (its scores are then not zero-shot)",
    )
    parser.add_argument(
        "--table",
        type=int,
        help="NCBI genetic code for every CDS (default: GenBank /transl_table, GFF "
        "transl_table attribute, else 1)",
    )
    parser.add_argument(
        "--flank",
        type=int,
        default=1024,
        help="bases streamed on each side of the CDS, for context (default 1024)",
    )
    parser.add_argument(
        "--no-codon-score",
        action="store_true",
        help="score each change at its position only; by default a codon score and an "
        "amino-acid score are also reported: the position score plus the change's effect "
        "on the predictions of the rest of its codon, and the change in the probability of "
        "the codon's amino acid, on each strand (many times the time of the position score)",
    )
    parser.add_argument(
        "--markov-order",
        type=int,
        help="order k of the baseline (default: the model's task.markov_order)",
    )


def _inputs(args: argparse.Namespace, base_dir: Path) -> tuple[Path, Path | None, bool]:
    """(annotation, FASTA or None, is_gff)."""
    if args.genbank and (args.gff or args.fasta):
        raise TaskInputError("give --genbank, or --fasta with --gff, not both")
    if args.genbank:
        return existing_file(args.genbank, base_dir, "--genbank"), None, False
    if not (args.gff and args.fasta):
        raise TaskInputError("give --genbank FILE, or --fasta FILE with --gff FILE")
    fasta = existing_file(args.fasta, base_dir, "--fasta")
    return existing_file(args.gff, base_dir, "--gff"), fasta, True


def choose_contigs(
    requested: str | None, in_file: list[str], held_out: tuple[str, ...], allow_train: bool
) -> list[str]:
    """The contigs to evaluate; an error when one is unknown or the model trained on it."""
    if requested in (None, ""):
        if not held_out:
            raise TaskInputError(
                "the model held out no whole contig (its task.val_contigs is empty), so every "
                "contig may be training data: give --contigs and --allow-train-contigs"
            )
        chosen = [c for c in in_file if c in held_out]
        if not chosen:
            raise TaskInputError(
                f"none of the model's held-out contigs ({', '.join(held_out)}) is in the "
                f"annotation; give --contigs (with --allow-train-contigs for other contigs)"
            )
        return chosen
    chosen = in_file if requested == "all" else [c.strip() for c in requested.split(",") if c]
    unknown = [c for c in chosen if c not in in_file]
    if unknown:
        listed = ", ".join(in_file[:5]) + (
            f" and {len(in_file) - 5} more" if len(in_file) > 5 else ""
        )
        raise TaskInputError(f"--contigs: {', '.join(unknown)} not in the annotation ({listed})")
    trained = [c for c in chosen if c not in held_out]
    if trained and not allow_train:
        raise TaskInputError(
            f"--contigs: the model may have trained on {', '.join(trained[:5])}"
            f"{' ...' if len(trained) > 5 else ''} (held out: {', '.join(held_out) or 'none'}); "
            f"evaluate held-out contigs only, or add --allow-train-contigs"
        )
    return chosen


def markov_settings(
    model_settings, genome_file: Path, all_contigs: list[str], contigs: list[str], order: int | None
):
    """The baseline's settings and a note on what it is fitted on: the model's own training
    regions when its files are still there, else the other contigs of the evaluated file."""
    from gfssm.tasks.dna.task_data import DnaData

    s = model_settings
    order = s.markov_order if order is None else order
    files = [s.fasta, s.include_bed, s.exclude_bed, s.val_bed]
    if all(f is None or Path(f).is_file() for f in files):
        own = s.model_copy(update={"markov_order": order})
        try:
            DnaData(own).split  # noqa: B018 - the split the baseline is fitted on
            return own, "the model's training regions"
        except (TaskInputError, ValueError):
            pass  # e.g. its held-out contigs are not in its genome: fit on the eval file
    fallback = DnaSettings(
        fasta=str(genome_file),
        cache_dir=str(cache_dir_of(s)),
        val_contigs=tuple(contigs),
        window_length=s.window_length,
        markov_order=order,
        markov_alpha=s.markov_alpha,
        markov_max_bases=s.markov_max_bases,
    )
    if set(all_contigs) <= set(contigs):
        return fallback, (
            f"nothing: the model's training data is gone and {genome_file.name} has no "
            f"other contigs, so the baseline is uniform (AUROC 0.5)"
        )
    return fallback, f"the contigs of {genome_file.name} other than the evaluated ones"


def make_vep_job(args: argparse.Namespace, base_dir: Path, loaded):
    """The job of ``gfssm eval dna-vep``; the annotation is read and checked here."""
    from gfssm.tasks.dna.embedding import check_streamable
    from gfssm.tasks.dna.genome import Genome
    from gfssm.tasks.dna.markov import MAX_ORDER
    from gfssm.tasks.dna.vep.cds import read_genbank_cds
    from gfssm.tasks.dna.vep.gff import read_gff_cds
    from gfssm.tasks.dna.vep.job import VepJob, cds_groups, cds_regions

    check_streamable(loaded.model, command="gfssm eval dna-vep")
    if args.flank < 0:
        raise TaskInputError(f"--flank {args.flank}: expected >= 0")
    if args.markov_order is not None and not 0 <= args.markov_order <= MAX_ORDER:
        raise TaskInputError(f"--markov-order {args.markov_order}: expected 0..{MAX_ORDER}")
    annotation, fasta, is_gff = _inputs(args, base_dir)
    settings = loaded.settings
    held_out = tuple(getattr(settings, "val_contigs", ()) or ())
    with command_line_hints():
        genome = Genome(fasta or annotation, cache_dir=cache_dir_of(settings))
        contigs = choose_contigs(
            args.contigs, list(genome.lengths), held_out, args.allow_train_contigs
        )
        if is_gff:
            found = read_gff_cds(annotation, genome, contigs, args.table)
        else:
            found = read_genbank_cds(annotation, contigs, args.table)
    found.require_usable(contigs)
    markov, fitted_on = markov_settings(
        settings, fasta or annotation, list(genome.lengths), contigs, args.markov_order
    )
    notes = [f"Markov baseline: order {markov.markov_order}, fitted on {fitted_on}"]
    if found.skipped_line():
        notes.insert(0, found.skipped_line())
    by_contig: dict[str, list] = {}
    for cds in found.cds:
        by_contig.setdefault(cds.contig, []).append(cds)
    items = [
        {
            "contig": contig,
            "cds": [c.to_dict() for c in group],
            "regions": [list(r) for r in cds_regions(group, genome.lengths[contig], args.flank)],
        }
        for contig, cds in by_contig.items()
        for group in cds_groups(cds)
    ]
    out = output_folder(args.out, base_dir)
    return VepJob(
        genome, annotation, fasta, out, items, markov, args.flank, not args.no_codon_score, notes
    )


def vep_command() -> TaskCommand:
    return TaskCommand(
        command="eval",
        name="dna-vep",
        help="zero-shot variant effects: AUROC of model and Markov scores on every SNV of "
        "annotated CDS (stop gained / missense vs synonymous)",
        add_arguments=add_vep_arguments,
        make_job=make_vep_job,
        description=DESCRIPTION,
    )
