"""Whole-genome scoring throughput: bases per second of the old one-stream path and of the
batched path (the scoring of ``score_genome``, without writing its output files), and the achieved FLOP/s as a fraction of a plain matrix multiply measured in
the same process.

    python tests/benchmarks/dna_scoring.py [--model DIR] [--bases 65536] [--repeats 3]

Without ``--model`` it builds the bundled ``ecoli15`` experiment's architecture, untrained
(speed does not depend on the weights). Reads the bundled E. coli genome. Two plans:

- ``whole``: one region streamed from its start (exact; forward only is one stream, so
  the batch has one row, two with the reverse complement);
- ``segments``: the region cut into ``--segment`` bases with ``--warmup`` bases of context
  (the plan's own approximation); the new path runs 4 segments (4,096 bases each per
  call) as rows of a batch.

The old path is ``ScoringOptions(piece_length=65536, batch_streams=1)`` with the plain
reference scan (``GFSSM_KERNELS=reference``): one stream at a time in 64 kb pieces through
the scan written for autograd, as scoring ran before batching and before the CPU inference
scan. The new path is the default: batched streams and, without autograd on the CPU, the
inference scan (``gfssm.kernels.ssd.cpu_inference``). Old and new runs are interleaved
and repeated; the medians are printed (the machine may be shared).

FLOPs per base are counted by ``torch.utils.flop_counter.FlopCounterMode`` on a streamed
forward: it counts the matrix products (projections, the scan's chunk products, the LM
head), the work a matmul benchmark measures; elementwise work (FIR, exp, norms) is not
counted. ``2 * parameters`` is printed beside it for comparison.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from gfssm.kernels.dispatch import ENV_VAR
from gfssm.pipelines.bundled import load_experiment_file
from gfssm.pipelines.config import build_experiment
from gfssm.tasks import get_task, load_model
from gfssm.tasks.dna import Genome, bundled_genome
from gfssm.tasks.dna.regions import Interval
from gfssm.tasks.dna.scoring import (
    ScoringOptions,
    group_items,
    plan_scoring,
    score_work_items,
)

OLD = {"piece_length": 65536, "batch_streams": 1}


def build_model(name: str | None, experiment: str, device: str) -> torch.nn.Module:
    """A trained model from ``name`` (a model folder), else ``experiment``'s untrained."""
    if name:
        return load_model(name, map_location=device).model.eval()
    task = get_task("dna")
    raw, source = load_experiment_file("dna", experiment)
    exp = build_experiment(raw, task, source=source)
    return task.build_model(exp.gfssm_config(task), exp.settings(task)).to(device).eval()


def matmul_gflops(n: int, seconds: float = 1.0) -> float:
    """GFLOP/s of a plain fp32 (n, n) @ (n, n), repeated for about ``seconds``."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - start) / 1e9


def flops_per_base(model: torch.nn.Module, tokens: torch.Tensor, piece: int) -> float:
    """Matrix-product FLOPs of a streamed forward, per base (tokens: (L,) int64)."""
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(tokens[None, :piece], cache=model.allocate_cache(1))
    return counter.get_total_flops() / piece


def timed(fn: Callable[[], None], kernels: str = "auto") -> float:
    """Seconds of ``fn()`` with ``GFSSM_KERNELS=kernels``."""
    before = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = kernels
    try:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start
    finally:
        if before is None:
            del os.environ[ENV_VAR]
        else:
            os.environ[ENV_VAR] = before


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None, help="a model folder (default: untrained)")
    parser.add_argument("--experiment", default="ecoli15")
    parser.add_argument("--bases", type=int, default=65536)
    parser.add_argument("--segment", type=int, default=8192)
    parser.add_argument("--warmup", type=int, default=1024)
    parser.add_argument("--piece", type=int, default=ScoringOptions.piece_length)
    parser.add_argument("--streams", type=int, default=ScoringOptions.batch_streams)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--plans", nargs="+", default=["whole", "segments"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = build_model(args.model, args.experiment, "cpu")
    genome = Genome(bundled_genome())
    contig = genome.contigs[0]
    region = [Interval(contig, 0, args.bases)]
    tokens = torch.from_numpy(genome.tokens(contig, 0, args.bases)[0])
    new = {"piece_length": args.piece, "batch_streams": args.streams}
    # many segments: more, shorter rows keep a call near 16k tokens
    new_for = {"whole": new, "segments": {"piece_length": 4096, "batch_streams": 4}}

    def run(plan: str, rc: bool, kind: dict) -> Callable[[], None]:
        """Score the plan's items as ``score_genome`` does, without writing the outputs."""
        segment, warmup = (args.segment, args.warmup) if plan == "segments" else (None, 0)
        items = plan_scoring(genome, region, segment_length=segment, warmup=warmup)
        options = ScoringOptions(reverse_complement=rc, **kind)

        def go() -> None:
            for group in group_items(items, options):
                score_work_items(model, genome, group, options)

        return go

    per_base = flops_per_base(model, tokens, min(args.piece, args.bases))
    params = sum(p.numel() for p in model.parameters())
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"{args.threads} threads, {args.bases:,} bases; load: {load}")
    print(
        f"model: {params:,} parameters; {per_base / 1e6:.3f} MFLOP/base in matrix products "
        f"(2 * parameters: {2 * params / 1e6:.3f})"
    )
    run(("whole"), False, new)()  # warm-up
    print(
        f"{'plan':9} {'strand':8} {'old b/s':>9} {'new b/s':>9} {'ratio':>6} "
        f"{'GFLOP/s':>8} {'matmul':>7} {'fraction':>8}",
        flush=True,
    )
    for plan in args.plans:
        for rc in (False, True):
            old_s, new_s, mm = [], [], []
            for _ in range(args.repeats):  # interleaved, so load changes hit both
                mm.append(matmul_gflops(1024, 0.5))
                old_s.append(timed(run(plan, rc, OLD), kernels="reference"))
                new_s.append(timed(run(plan, rc, new_for[plan])))
            segment, warmup = (args.segment, args.warmup) if plan == "segments" else (None, 0)
            items = plan_scoring(genome, region, segment_length=segment, warmup=warmup)
            streamed = sum(i.end - i.context_start + rc * (i.context_end - i.start) for i in items)
            old_rate = args.bases / statistics.median(old_s)
            new_rate = args.bases / statistics.median(new_s)
            gflops = new_rate * streamed / args.bases * per_base / 1e9
            matmul = statistics.median(mm)  # plain fp32 1024^3, beside this row's runs
            print(
                f"{plan:9} {'+rc' if rc else 'forward':8} {old_rate:9,.0f} {new_rate:9,.0f} "
                f"{new_rate / old_rate:6.2f} {gflops:8.2f} {matmul:7.1f} {gflops / matmul:8.1%}",
                flush=True,
            )
    print(f"segments: {args.segment} bases + {args.warmup} warm-up; new: {new_for}; old: {OLD}")


if __name__ == "__main__":
    main()
