"""The one training loop: every Ray Train rank runs it, and ``gfssm train --local`` runs it
in this process (:mod:`gfssm.pipelines.train_context`).

Each rank draws its own shard (``task.train_batches(rank=, world_size=)``), DDP averages the
gradients, and every rank reaches the same decisions: one all-reduce per step sums the loss,
the non-finite flags and the time-budget flag, so a bad step is skipped everywhere and a run
out of time stops everywhere. Rank 0 evaluates, writes checkpoints and logs to MLflow (the
run id comes from the driver, so a restarted worker group keeps logging into the same run).
Metrics reach MLflow when a checkpoint is reported, so a run restored from a checkpoint
never logs a step twice. A task's input error ends the run at once (no restarts).
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from mlflow.tracking import MlflowClient
from torch.optim.lr_scheduler import LambdaLR

from gfssm import ConfigError, param_groups
from gfssm.pipelines.checkpoint import (
    TrainState,
    capture_rng,
    read_checkpoint,
    restore_rng,
    write_checkpoint,
)
from gfssm.pipelines.config import Experiment, TrainConfig
from gfssm.pipelines.stability import StabilityMonitor
from gfssm.pipelines.tracking import ABORT_TAG, log_metrics, set_tags
from gfssm.tasks.base import get_task, move_batch
from gfssm.tasks.jobs import TaskInputError
from gfssm.tasks.pretrained import unwrap

ABORT_KEY = "abort_reason"
_HEADLINE_WORDS = ("loss", "bits", "accuracy", "wer", "cer", "perplexity")


def headline(metric: str) -> bool:
    """Quality metrics worth printing (not counts such as windows or bases)."""
    return any(word in metric for word in _HEADLINE_WORDS)


def warmup_cosine(train: TrainConfig, time_used: list[float] | None = None):
    """lr multiplier at a step: linear warmup to 1, then cosine down to ``min_lr_ratio``.
    With a time budget, ``time_used[0]`` (the fraction of it spent, the same on every rank)
    moves the cosine too, so a run stopped by its budget ends with a decayed lr."""

    def factor(step: int) -> float:
        if step < train.warmup_steps:
            return (step + 1) / train.warmup_steps
        span = max(1, train.steps - train.warmup_steps)
        progress = min(1.0, (step - train.warmup_steps) / span)
        if time_used is not None:
            progress = max(progress, min(1.0, time_used[0]))
        return train.min_lr_ratio + (1 - train.min_lr_ratio) * 0.5 * (
            1 + math.cos(math.pi * progress)
        )

    return factor


def _sum_across_ranks(values: list[float], device: torch.device) -> list[float]:
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor.tolist()


def _use_autocast(train: TrainConfig, device: torch.device) -> bool:
    return device.type == "cuda" and train.precision == "bf16"


class _MetricsSink:
    """Rank 0's MLflow logging, held until the next checkpoint is safe (a restore then
    repeats no logged step); a tracking outage warns once and never stops training."""

    def __init__(self, tracking_uri: str | None, run_id: str | None) -> None:
        self.client = MlflowClient(tracking_uri) if tracking_uri and run_id else None
        self.run_id = run_id
        self.warned = False
        self.pending: list[tuple[dict[str, float], int]] = []

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.client is not None and metrics:
            self.pending.append((dict(metrics), step))

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        for metrics, step in pending:
            try:
                log_metrics(self.client, self.run_id, metrics, step=step)
            except Exception as err:  # keep training when the tracking server hiccups
                if not self.warned:
                    print(f"warning: MLflow logging failed at step {step}: {err}")
                    self.warned = True


def quiet_report_lines() -> None:
    """Ray 2.60 logs every report at INFO under a logger named after its file (so
    ``LoggingConfig`` misses it); one line per report per rank drowns the progress."""
    try:
        from ray.train.v2._internal.execution import context as train_context
    except ImportError:
        return
    logging.getLogger(train_context.__file__).setLevel(logging.WARNING)


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train entry: ``loop_config`` holds the experiment dict, MLflow run id and URI."""
    from gfssm.pipelines.train_context import RayContext

    quiet_report_lines()
    run_loop(loop_config, RayContext())


def run_loop(loop_config: dict[str, Any], ctx) -> None:
    """The loop on one rank; ``ctx`` is a Ray or local context (see the module docstring)."""
    experiment = Experiment.model_validate(loop_config["experiment"])
    sink = _MetricsSink(loop_config.get("tracking_uri"), loop_config.get("run_id"))
    try:
        _train(experiment, ctx, sink if ctx.rank == 0 else None)
    except (TaskInputError, ConfigError) as err:
        # Bad data does not heal on a new worker: end the run now, with the message (as a
        # run tag: Ray's result keeps only the metrics of reports that carried a checkpoint).
        if ctx.rank == 0 and sink.client is not None:
            set_tags(sink.client, sink.run_id, {ABORT_TAG: str(err)})
        ctx.report({"step": 0, ABORT_KEY: str(err)}, None)
    finally:
        if ctx.rank == 0:
            sink.flush()


def _train(experiment: Experiment, ctx, sink: _MetricsSink | None) -> None:
    train = experiment.train
    rank, world_size, device = ctx.rank, ctx.world_size, ctx.device
    task = get_task(experiment.task_name)
    settings = experiment.settings(task)
    model_config = experiment.gfssm_config(task)
    torch.manual_seed(train.seed)  # identical initial weights on every rank
    model = task.build_model(model_config, settings).to(device)
    optimizer = torch.optim.AdamW(
        param_groups(model, train.weight_decay), lr=train.lr, betas=train.betas
    )
    time_used = [0.0]  # fraction of the time budget spent (rank 0's clock, shared)
    scheduler = LambdaLR(optimizer, warmup_cosine(train, time_used))

    step, nonfinite, last_eval, restored = 0, 0, {}, False
    stability = StabilityMonitor(warmup_steps=train.warmup_steps)
    with ctx.restore() as folder:
        if folder is not None:
            weights, state = read_checkpoint(Path(folder), map_location=device)
            model.load_state_dict(weights)
            optimizer.load_state_dict(state.optimizer)
            scheduler.load_state_dict(state.scheduler)
            step, nonfinite, last_eval, restored = (
                state.step,
                state.nonfinite_steps,
                state.last_eval,
                True,
            )
            if state.stability:
                stability = StabilityMonitor.restored(state.stability)
            if rank == 0:
                restore_rng(state.rng)
    if not restored or rank != 0:
        torch.manual_seed(train.seed * 1009 + rank * 7919 + step)

    model = ctx.prepare_model(model)
    if sink is not None and restored:
        sink.log({"restored_from_step": float(step)}, step)

    batches = task.train_batches(
        settings,
        seed=train.seed,
        rank=rank,
        world_size=world_size,
        batch_size=train.batch_size,
        start_step=step,
    )
    autocast = _use_autocast(train, device)
    budget_s = 60 * train.time_budget_minutes if train.time_budget_minutes else None
    started = time.monotonic()
    window = _new_window()
    model.train()

    def save(step: int, metrics: dict[str, Any]) -> None:
        state = _state(step, optimizer, scheduler, nonfinite, experiment, last_eval)
        state.stability = stability.state()
        _report(ctx, step, metrics, (task, model, model_config, settings, state))
        if sink is not None:
            sink.flush()

    while step < train.steps:
        step += 1
        if train.fail_at_step == step and not restored and rank == world_size - 1:
            raise RuntimeError(f"injected failure at step {step} (train.fail_at_step)")
        batch = move_batch(next(batches), device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            out = task.training_step(model, batch)
        loss = out.loss
        local_finite = bool(torch.isfinite(loss.detach()).item())
        spent = (time.monotonic() - started) / budget_s if budget_s and rank == 0 else 0.0
        loss_sum, count, bad, time_used[0], tokens = _sum_across_ranks(
            [
                float(loss.detach()) * out.count if local_finite else 0.0,
                float(out.count),
                0.0 if local_finite else 1.0,
                spent,
                float(out.tokens or out.count),
            ],
            device,
        )
        over = 1.0 if time_used[0] >= 1.0 else 0.0
        last_step = step == train.steps or over > 0
        optimizer.zero_grad(set_to_none=True)
        skipped = bad > 0
        grad_norm = float("nan")
        if not skipped:
            loss.backward()
            params = [p for p in model.parameters() if p.grad is not None]
            if train.grad_clip is not None:
                grad_norm = float(torch.nn.utils.clip_grad_norm_(params, train.grad_clip))
            else:
                grad_norm = float(torch.nn.utils.get_total_norm([p.grad for p in params]))
            skipped = not math.isfinite(grad_norm)  # gradients are all-reduced: same on all ranks
            if not skipped:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        mean_loss = loss_sum / max(count, 1e-9) if bad == 0 else math.nan
        if stability.update(step, mean_loss, grad_norm, tokens) and train.stop_on_divergence:
            if rank == 0:
                print(f"diverged at step {step} ({stability.why}); stopping", flush=True)
                last_eval = _evaluate(task, model, settings, train, device, autocast)
                sink.log({**last_eval, **stability.metrics()}, step)
            save(step, {**last_eval, "step": step, **stability.metrics()})
            return

        if skipped:
            nonfinite += 1
            if sink is not None:
                sink.log({"nonfinite_steps": float(nonfinite)}, step)
            if nonfinite > train.max_nonfinite:
                reason = (
                    f"training aborted at step {step}: {nonfinite} steps had a non-finite loss "
                    f"or gradient (limit train.max_nonfinite={train.max_nonfinite}); lower "
                    f"train.lr, raise train.warmup_steps or set train.precision=fp32"
                )
                save(step, {train.select_metric: float("nan"), **last_eval, ABORT_KEY: reason})
                return
        else:
            window["loss_sum"] += loss_sum
            window["count"] += count
            window["grad_norm"] += grad_norm
            window["steps"] += 1

        if (step % train.log_every == 0 or last_step) and window["steps"]:
            if sink is not None:
                elapsed = max(time.perf_counter() - window["t0"], 1e-9)
                logged = {
                    "train_loss": window["loss_sum"] / max(window["count"], 1e-9),
                    "grad_norm": window["grad_norm"] / window["steps"],
                    "lr": scheduler.get_last_lr()[0],
                    "items_per_s": window["count"] / elapsed,
                    **stability.metrics(),
                }
                sink.log(logged, step)
                print(
                    f"step {step}/{train.steps}  loss {logged['train_loss']:.4f}  "
                    f"lr {logged['lr']:.2e}  {logged['items_per_s']:.0f} items/s",
                    flush=True,
                )
            window = _new_window()

        if step % train.eval_every == 0 or last_step:
            if rank == 0:
                last_eval = _evaluate(task, model, settings, train, device, autocast)
                sink.log(last_eval, step)
                shown = "  ".join(f"{k} {v:.4g}" for k, v in last_eval.items() if headline(k))
                print(f"eval at step {step}: {shown}", flush=True)
            metrics = {
                **last_eval,
                "step": step,
                "nonfinite_steps": nonfinite,
                **stability.metrics(),
            }
            if step % train.checkpoint_every == 0 or last_step:
                save(step, metrics)
            else:
                _report(ctx, step, metrics, None)
        if over > 0:
            if rank == 0:
                print(
                    f"time budget of {train.time_budget_minutes:g} min reached at step {step}",
                    flush=True,
                )
            return


def _new_window() -> dict[str, float]:
    return {"loss_sum": 0.0, "count": 0.0, "grad_norm": 0.0, "steps": 0, "t0": time.perf_counter()}


def _state(step, optimizer, scheduler, nonfinite, experiment: Experiment, last_eval) -> TrainState:
    return TrainState(
        step=step,
        optimizer=optimizer.state_dict(),
        scheduler=scheduler.state_dict(),
        nonfinite_steps=nonfinite,
        rng=capture_rng(),
        experiment=experiment.model_dump(mode="json"),
        last_eval=last_eval,
    )


def _evaluate(
    task, model, settings, train: TrainConfig, device, autocast: bool
) -> dict[str, float]:
    plain = unwrap(model)
    plain.eval()
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        values = task.evaluate(
            plain,
            settings,
            batch_size=train.eval_batch_size or train.batch_size,
            max_batches=train.eval_batches,
            device=device,
        )
    plain.train()
    return {f"eval_{k}": float(v) for k, v in values.items()}


def _report(ctx, step: int, metrics: dict[str, Any], to_save) -> None:
    """Every rank reports; rank 0 attaches the checkpoint when one is due."""
    metrics = {**metrics, "step": step}
    if ctx.rank != 0 or to_save is None:
        ctx.report(metrics, None)
        return
    task, model, model_config, settings, state = to_save
    with tempfile.TemporaryDirectory(prefix="gfssm-ckpt-") as folder:
        write_checkpoint(
            Path(folder),
            task=task,
            model=model,
            config=model_config,
            settings=settings,
            state=state,
        )
        ctx.report(metrics, Path(folder))
