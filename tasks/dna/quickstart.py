"""A DNA model that trains on 2 CPU cores in minutes, on the bundled E. coli 536 genome.

The choice of settings, model and optimiser lives in :data:`QUICKSTART`; pipelines can
take it as is (``QUICKSTART.settings``, ``QUICKSTART.model``, ``QUICKSTART.batch_size``).
Running this module trains through the :class:`~gfssm.tasks.Task` interface alone, with a
cosine learning rate over a wall-clock budget, and prints the model's validation bits per
base next to the order-k Markov baseline::

    python -m gfssm.tasks.dna.quickstart --minutes 15 --out runs/ecoli-quickstart
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gfssm import param_groups
from gfssm.tasks.dna.task import DnaTask
from gfssm.tasks.pretrained import save_model


@dataclass(frozen=True)
class Quickstart:
    """Settings (the ``task:`` section), model overrides and optimiser of a short run."""

    settings: dict[str, Any] = field(default_factory=dict)
    preset: str = "gfssm"
    model: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 8
    learning_rate: float = 3e-3
    weight_decay: float = 0.1
    warmup_steps: int = 30
    grad_clip: float = 1.0
    minutes: float = 15.0
    eval_every_minutes: float = 3.0
    eval_batches: int = 8


QUICKSTART = Quickstart(
    settings={"window_length": 1024, "val_fraction": 0.05, "rc_augment": True},
    model={"d_model": 128, "n_layer": 4, "headdim": 32, "d_state": 32, "chunk_size": 64},
)


def learning_rate(quick: Quickstart, step: int, progress: float) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine to 10% as ``progress`` -> 1."""
    warm = min(1.0, (step + 1) / quick.warmup_steps)
    return quick.learning_rate * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def run(
    quick: Quickstart = QUICKSTART,
    *,
    minutes: float | None = None,
    max_steps: int | None = None,
    out_dir: str | Path | None = None,
    threads: int = 2,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> dict[str, float]:
    """Train for ``minutes`` of wall clock (or ``max_steps`` steps, whichever comes first)
    and return the full validation metrics."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    budget = 60.0 * (quick.minutes if minutes is None else minutes)
    task = DnaTask()
    settings = task.settings(quick.settings)
    config = task.model_config(quick.preset, quick.model, settings)
    model = task.build_model(config, settings)
    optim = torch.optim.AdamW(param_groups(model, quick.weight_decay), lr=quick.learning_rate)
    batches = task.train_batches(
        settings, seed=seed, rank=0, world_size=1, batch_size=quick.batch_size
    )
    n_params = sum(p.numel() for p in model.parameters())
    log(f"dna quickstart: {n_params:,} parameters, {budget / 60:.1f} min on {threads} threads")
    log(f"genome {task.data(settings).genome}, windows of {settings.window_length}")
    start = time.monotonic()
    next_eval = 60.0 * quick.eval_every_minutes
    step = bases = 0
    while (elapsed := time.monotonic() - start) < budget and step < (max_steps or 1 << 62):
        lr = learning_rate(quick, step, elapsed / budget)
        for group in optim.param_groups:
            group["lr"] = lr
        out = task.training_step(model, next(batches))
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), quick.grad_clip)
        optim.step()
        optim.zero_grad(set_to_none=True)
        step += 1
        bases += out.count
        if step % 20 == 0:
            log(
                f"step {step} {elapsed / 60:.1f} min lr {lr:.2e} train bits/base "
                f"{out.metrics['bits_per_base']:.4f} ({bases / max(elapsed, 1e-9):.0f} bases/s)"
            )
        if elapsed >= next_eval:
            metrics = task.evaluate(
                model, settings, batch_size=quick.batch_size, max_batches=quick.eval_batches
            )
            log(_side_by_side(f"eval at step {step} (subset)", metrics))
            next_eval += 60.0 * quick.eval_every_minutes
    metrics = task.evaluate(model, settings, batch_size=quick.batch_size)
    metrics |= {"steps": float(step), "train_bases": float(bases)}
    log(_side_by_side(f"final validation after {step} steps, {bases:,} bases", metrics))
    if out_dir is not None:
        save_model(
            out_dir,
            task=task,
            model=model,
            config=config,
            settings=settings,
            extra={"quickstart_metrics": metrics},
        )
        log(f"model saved to {out_dir}")
    return metrics


def _side_by_side(title: str, m: dict[str, float]) -> str:
    return (
        f"{title}: model {m['bits_per_base']:.4f} bits/base (accuracy {m['accuracy']:.3f}) | "
        f"order-{int(m['markov_order'])} Markov {m['markov_bits_per_base']:.4f} bits/base "
        f"(accuracy {m['markov_accuracy']:.3f}) on {int(m['bases']):,} bases"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=QUICKSTART.minutes)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--out", default=None, help="model directory to write at the end")
    args = parser.parse_args(argv)
    run(
        minutes=args.minutes,
        max_steps=args.max_steps,
        out_dir=args.out,
        threads=args.threads,
        seed=args.seed,
    )


if __name__ == "__main__":
    main()
