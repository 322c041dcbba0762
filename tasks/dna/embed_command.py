"""``gfssm embed``: the DNA task's embedding job as a command of its own (see
:mod:`gfssm.tasks.dna.jobs.embed_job`)."""

from __future__ import annotations

from gfssm.tasks.dna.jobs.embed_job import add_embed_arguments, make_embed_job
from gfssm.tasks.jobs import TaskCommand


def embed_command() -> TaskCommand:
    return TaskCommand(
        "embed",
        None,
        "embeddings of genome regions of any length (per base or mean per window)",
        add_embed_arguments,
        make_job=make_embed_job,
        description=(
            "Embeddings of FASTA regions (a BED, --region, or every contig) from a causal DNA "
            "model, streamed in constant memory and equal to one pass over each region; "
            "Parquet or NumPy files with 0-based half-open coordinates. Resumable: run the "
            "same command again after Ctrl-C."
        ),
    )
