"""Whole-genome scoring throughput (bases per second), against the bare model forward
pass on the same bases measured in the same process (the ratio shows the overhead of
streaming, token reading and writing scores).

    python tests/benchmarks/dna_scoring.py [--model runs/ecoli] [--bases 200000]

Without ``--model`` it uses the quickstart architecture, untrained (speed does not depend
on the weights). Reads the bundled E. coli genome.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from gfssm.tasks import get_task, load_model
from gfssm.tasks.dna import Genome, bundled_genome
from gfssm.tasks.dna.quickstart import QUICKSTART
from gfssm.tasks.dna.regions import Interval
from gfssm.tasks.dna.scoring import ScoringOptions, score_genome


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--bases", type=int, default=200_000)
    parser.add_argument("--piece", type=int, default=65536)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.model:
        model = load_model(args.model, map_location=args.device).model
    else:
        task = get_task("dna")
        settings = task.settings(QUICKSTART.settings)
        config = task.model_config(QUICKSTART.preset, QUICKSTART.model, settings)
        model = task.build_model(config, settings).to(args.device).eval()
    genome = Genome(bundled_genome())
    contig = genome.contigs[0]
    region = [Interval(contig, 0, args.bases)]

    tokens = torch.from_numpy(genome.tokens(contig, 0, args.bases)[0]).to(args.device)

    def timed(fn) -> tuple[float, float]:
        """(wall, CPU) seconds; CPU time is steadier on a shared machine."""
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - wall, time.process_time() - cpu

    def bare_forward() -> None:
        with torch.inference_mode():
            cache = model.allocate_cache(1)
            for a in range(0, args.bases, args.piece):
                model(tokens[None, a : a + args.piece], cache=cache)

    def scored(rc: bool):
        def go() -> None:
            with tempfile.TemporaryDirectory() as tmp:
                options = ScoringOptions(args.piece, reverse_complement=rc)
                score_genome(
                    model, genome, f"{tmp}/b", regions=region, progress=False, options=options
                )

        return go

    with torch.inference_mode():
        model(tokens[None, :1024])  # warm-up
    print(f"device {args.device}, {args.threads} threads, {args.bases:,} bases, piece {args.piece}")
    bare = timed(bare_forward)
    print(
        f"bare streamed forward: {args.bases / bare[0]:,.0f} bases/s wall, "
        f"{args.bases / bare[1]:,.0f} per CPU-second"
    )
    for rc, label in ((False, "score_genome, forward"), (True, "score_genome, + reverse")):
        wall, cpu = timed(scored(rc))
        print(
            f"{label}: {args.bases / wall:,.0f} bases/s wall, {args.bases / cpu:,.0f} per "
            f"CPU-second (CPU-time ratio to bare {bare[1] / cpu:.2f})"
        )


if __name__ == "__main__":
    main()
