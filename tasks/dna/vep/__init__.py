"""Zero-shot variant effects on annotated coding sequences (``gfssm eval dna-vep``).

- :mod:`~gfssm.tasks.dna.vep.cds`, :mod:`~gfssm.tasks.dna.vep.gff`: CDS of a GenBank file
  or a GFF3, checked (whole codons, A/C/G/T only, no internal stop);
- :mod:`~gfssm.tasks.dna.vep.effects`: every SNV of a CDS with its class;
- :mod:`~gfssm.tasks.dna.vep.scores`: four-base predictions of the model and the Markov
  baseline, both strands, from one streamed pass per region;
- :mod:`~gfssm.tasks.dna.vep.metrics`: AUROC, per-class counts, codon-position entropy;
- :mod:`~gfssm.tasks.dna.vep.job`: the batch job.
"""

from gfssm.tasks.dna.vep.cds import Cds, CdsSet, read_genbank_cds
from gfssm.tasks.dna.vep.effects import CLASSES, cds_variants
from gfssm.tasks.dna.vep.gff import read_gff_cds
from gfssm.tasks.dna.vep.metrics import auroc, summarize

__all__ = [
    "CLASSES",
    "Cds",
    "CdsSet",
    "auroc",
    "cds_variants",
    "read_genbank_cds",
    "read_gff_cds",
    "summarize",
]
