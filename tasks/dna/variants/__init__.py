"""Variant effect scoring from a VCF: SNVs and indels.

The score of an ALT allele is ``log2 P(alt haplotype window) - log2 P(ref haplotype
window)`` (bits), averaged over the forward and reverse-complement strands. Parts that a
parallel runner can drive one by one, and :func:`score_vcf` composes in one process:

1. :func:`read_variants` turns VCF records into picklable :class:`VariantRecord` objects
   with their windows (REF checked against the FASTA, contig names resolved);
2. :func:`score_variant_batch` scores a list of records with a loaded model (pure);
3. :class:`VariantWriter` writes the annotated VCF and the Parquet table, in VCF order.
"""

from __future__ import annotations

import logging
from itertools import islice
from pathlib import Path

from torch import nn
from tqdm.auto import tqdm

from gfssm.tasks.dna.genome import Genome
from gfssm.tasks.dna.variants.effect import VariantScore, score_variant_batch
from gfssm.tasks.dna.variants.output import VariantOutputs, VariantWriter
from gfssm.tasks.dna.variants.records import (
    REF_MISMATCH,
    VariantRecord,
    VcfFormatError,
    read_variants,
)

log = logging.getLogger(__name__)

__all__ = [
    "VariantOutputs",
    "VariantRecord",
    "VariantScore",
    "VariantWriter",
    "VcfFormatError",
    "contig_lengths",
    "read_variants",
    "score_variant_batch",
    "score_vcf",
]


def score_vcf(
    model: nn.Module,
    genome: Genome,
    vcf: str | Path,
    prefix: str | Path,
    *,
    flank: int = 512,
    batch_size: int = 32,
    reverse_complement: bool = True,
    progress: bool = True,
) -> VariantOutputs:
    """Score every record of ``vcf`` and write ``<prefix>.vcf.gz`` and
    ``<prefix>.variants.parquet``. Contig names are resolved through ``genome.aliases``."""
    records = read_variants(vcf, genome, flank=flank)
    writer = VariantWriter(vcf, prefix, contig_lengths(genome), cache_dir=genome.cache_dir)
    try:
        with tqdm(unit="variant", disable=not progress, desc="variants") as bar:
            while batch := list(islice(records, batch_size)):
                writer.write(
                    batch, score_variant_batch(model, batch, reverse_complement=reverse_complement)
                )
                bar.update(len(batch))
    except BaseException:
        writer.abort()
        raise
    outputs = writer.close()
    if outputs.counts.get(REF_MISMATCH):
        log.warning(
            "%s: %d ALT allele(s) skipped for REF mismatch (see the 'detail' column of %s)",
            vcf,
            outputs.counts[REF_MISMATCH],
            outputs.table,
        )
    return outputs


def contig_lengths(genome: Genome) -> dict[str, int]:
    """Lengths by every name a VCF may use: the FASTA's names and the aliases."""
    return dict(genome.lengths) | {a: genome.lengths[c] for a, c in genome.aliases.items()}
