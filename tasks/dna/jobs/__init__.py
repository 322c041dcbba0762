"""The DNA task's batch jobs, run by ``gfssm score genome|variants`` on an actor pool (or in
one process with :func:`gfssm.tasks.jobs.run_job_inline`)."""

from gfssm.tasks.dna.jobs.common import open_genome, parse_aliases
from gfssm.tasks.dna.jobs.genome_job import GenomeScoreJob, make_genome_job
from gfssm.tasks.dna.jobs.variant_job import VariantScoreJob, make_variant_job, variant_prefix

__all__ = [
    "GenomeScoreJob",
    "VariantScoreJob",
    "make_genome_job",
    "make_variant_job",
    "open_genome",
    "parse_aliases",
    "variant_prefix",
]
