"""Whole-genome scoring: per-base log-likelihood and entropy for every base.

Three parts that a parallel runner (Ray Data) can drive one by one, and that
:func:`score_genome` composes in a single process:

1. :func:`plan_scoring` lists the work items (contigs or segments);
2. :func:`score_work_items` scores a group of items (:func:`group_items`) with a loaded
   model, their streams as the rows of one batch (pure: same inputs, same arrays, wherever
   it runs);
3. :class:`ShardStore` writes one shard per item and :func:`merge_shards` turns the shards
   into bgzip bedGraphs, bigWigs with a trackDb and a per-window Parquet summary.
"""

from gfssm.tasks.dna.scoring.genome_scoring import check_same_run, model_fingerprint, score_genome
from gfssm.tasks.dna.scoring.output import ScoreOutputs, merge_shards, output_paths
from gfssm.tasks.dna.scoring.plan import WorkItem, plan_scoring
from gfssm.tasks.dna.scoring.shards import ShardStore
from gfssm.tasks.dna.scoring.stream import (
    ScoringOptions,
    SegmentScores,
    group_items,
    score_work_item,
    score_work_items,
)

__all__ = [
    "ScoreOutputs",
    "ScoringOptions",
    "SegmentScores",
    "ShardStore",
    "WorkItem",
    "check_same_run",
    "group_items",
    "merge_shards",
    "model_fingerprint",
    "output_paths",
    "plan_scoring",
    "score_genome",
    "score_work_item",
    "score_work_items",
]
