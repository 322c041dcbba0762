"""Whole-genome scoring: per-base log-likelihood and entropy for every base.

Three parts that a parallel runner (Ray Data) can drive one by one, and that
:func:`score_genome` composes in a single process:

1. :func:`plan_scoring` lists the work items (contigs or segments);
2. :func:`score_work_item` scores one item with a loaded model (pure: same inputs, same
   arrays, wherever it runs);
3. :class:`ShardStore` writes one shard per item and :func:`merge_shards` turns the shards
   into bgzip bedGraphs, bigWigs with a trackDb and a per-window Parquet summary.
"""

from gfssm.tasks.dna.scoring.genome_scoring import check_same_run, model_fingerprint, score_genome
from gfssm.tasks.dna.scoring.output import ScoreOutputs, merge_shards, output_paths
from gfssm.tasks.dna.scoring.plan import WorkItem, plan_scoring
from gfssm.tasks.dna.scoring.shards import ShardStore
from gfssm.tasks.dna.scoring.stream import ScoringOptions, SegmentScores, score_work_item

__all__ = [
    "ScoreOutputs",
    "ScoringOptions",
    "SegmentScores",
    "ShardStore",
    "WorkItem",
    "check_same_run",
    "merge_shards",
    "model_fingerprint",
    "output_paths",
    "plan_scoring",
    "score_genome",
    "score_work_item",
]
