"""The ``task:`` section of a DNA experiment (frozen; unknown keys are errors)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from pydantic import Field, model_validator

from gfssm.tasks.base import TaskSettings
from gfssm.tasks.dna.markov import MAX_ORDER

MAX_WINDOW = 1_048_576
BUNDLED_GENOME = "ecoli_536.fa.gz"


def bundled_genome() -> Path:
    """The E. coli 536 genome (NC_008253.1, 4.94 Mb) shipped with the package (bgzip +
    .fai + .gzi); see ``gfssm/tasks/dna/data/README.md`` for its source and license."""
    return Path(str(files("gfssm.tasks.dna.data") / BUNDLED_GENOME))


class DnaSettings(TaskSettings):
    """Where the genome is, how it is split, and how windows are drawn.

    Validation is held out as, by precedence: ``val_contigs``; the regions of ``val_bed``;
    or the last ``val_fraction`` of every usable region. No training window ever overlaps a
    validation base.
    """

    fasta: str | None = Field(
        None,
        description="FASTA (plain, bgzip, gzip, bzip2, xz or zstd) or GenBank file; None = "
        "bundled E. coli 536",
    )
    include_bed: str | None = Field(None, description="BED of regions to use (default all)")
    exclude_bed: str | None = Field(None, description="BED of regions never used")
    contig_aliases: dict[str, str] = Field(
        default_factory=dict, description="names in BED/VCF files -> FASTA contig names"
    )
    cache_dir: str | None = Field(None, description="for indexes/conversions; default ~/.cache")
    convert_compressed: bool = Field(
        True,
        description="convert a gzip/xz/bzip2/zstd FASTA into bgzip in cache_dir once (with a "
        "notice); false: refuse it with advice",
    )
    window_length: int = Field(1024, ge=16, le=MAX_WINDOW, description="bases per window")
    eval_window_length: int | None = Field(
        None, ge=16, le=MAX_WINDOW, description="validation window length (default window_length)"
    )
    max_n_fraction: float = Field(0.1, ge=0.0, le=1.0, description="skip windows with more N")
    rc_augment: bool = Field(
        True, description="read half the training windows reverse-complemented"
    )
    val_contigs: tuple[str, ...] = Field((), description="held-out contigs")
    val_bed: str | None = Field(None, description="BED of held-out regions")
    val_fraction: float = Field(
        0.05, ge=0.0, lt=1.0, description="held-out tail of each region when no val_contigs/val_bed"
    )
    markov_order: int = Field(12, ge=0, le=MAX_ORDER, description="order k of the Markov baseline")
    markov_alpha: float = Field(256.0, gt=0.0, description="smoothing strength of the baseline")
    markov_max_bases: int = Field(
        20_000_000, ge=1, description="training bases the baseline counts (spread evenly)"
    )
    softmask_weight: float = Field(
        1.0, ge=0.0, description="loss weight of lowercase (soft-masked) bases"
    )

    @model_validator(mode="after")
    def _one_validation_source(self) -> DnaSettings:
        if self.val_contigs and self.val_bed:
            raise ValueError("give val_contigs or val_bed, not both")
        return self

    @property
    def eval_length(self) -> int:
        return self.eval_window_length or self.window_length

    def genome_path(self) -> Path:
        return Path(self.fasta).expanduser() if self.fasta else bundled_genome()
