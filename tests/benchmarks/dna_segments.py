"""How far segmented scoring (with warm-up) is from scoring each contig in one pass.

    python tests/benchmarks/dna_segments.py --model runs/ecoli [--bases 60000]

Scores the first ``--bases`` of the bundled E. coli genome in one pass, then in three
segments with several warm-up lengths, and prints the mean and max absolute difference of
log2 P per base (in bits) over the segmented part. Residual differences after a long
warm-up come from the attention-sink state, which keeps each stream's first tokens.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from gfssm.tasks import load_model
from gfssm.tasks.dna import Genome, bundled_genome
from gfssm.tasks.dna.regions import Interval
from gfssm.tasks.dna.scoring import ScoringOptions, plan_scoring, score_work_item


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--bases", type=int, default=60_000)
    parser.add_argument("--warmups", type=int, nargs="+", default=[0, 1000, 5000])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model).model
    genome = Genome(bundled_genome())
    region = [Interval(genome.contigs[0], 0, args.bases)]
    options = ScoringOptions(16384)
    one_pass = score_work_item(model, genome, plan_scoring(genome, region)[0], options).log2_prob
    segment = args.bases // 3
    for warmup in args.warmups:
        items = plan_scoring(genome, region, segment_length=segment, warmup=warmup)
        parts = [score_work_item(model, genome, item, options).log2_prob for item in items]
        diff = np.abs(np.concatenate(parts) - one_pass)[segment:]
        print(
            f"segments of {segment:,}, warm-up {warmup:,}: mean |diff| {np.nanmean(diff):.2e} "
            f"bits, max {np.nanmax(diff):.2e} bits"
        )


if __name__ == "__main__":
    main()
