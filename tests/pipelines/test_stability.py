"""Divergence detection: the monitor's rules on known loss sequences, and real training
runs, one made to diverge (a huge learning rate, no clipping) and one that does not."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from gfssm.pipelines.config import build_experiment
from gfssm.pipelines.stability import StabilityMonitor
from gfssm.pipelines.tracking import metric_history
from gfssm.pipelines.train import run_training
from gfssm.tasks import get_task


def feed(losses, warmup=2, grads=None):
    monitor = StabilityMonitor(warmup_steps=warmup)
    hit = [
        step
        for step, loss in enumerate(losses, start=1)
        if monitor.update(step, loss, (grads or {}).get(step, 1.0), tokens=100)
    ]
    return monitor, hit


def test_a_falling_loss_with_noise_does_not_diverge():
    losses = [5.0 - 0.02 * i + (0.3 if i % 7 == 0 else 0.0) for i in range(200)]
    monitor, hit = feed(losses)
    assert hit == [] and not monitor.diverged
    assert monitor.metrics()["diverged_step"] == -1.0
    assert 0 < monitor.max_loss_spike < 0.3  # a one-step bump moves the average a little


def test_a_non_finite_loss_or_gradient_diverges_at_that_step():
    monitor, hit = feed([3.0, 2.9, math.nan, 2.0])
    assert hit == [3] and monitor.diverged_step == 3
    monitor, hit = feed([3.0, 2.9, 2.8, 2.7], grads={4: math.inf})
    assert hit == [4] and monitor.metrics()["diverged"] == 1.0


def test_a_loss_climbing_back_above_its_start_diverges_once():
    losses = [4.0] * 5 + [3.0] * 20 + [9.0] * 30
    monitor, hit = feed(losses, warmup=5)
    assert len(hit) == 1 and 26 <= hit[0] <= 40
    assert monitor.max_loss_spike > 1.0
    assert monitor.max_grad_norm == 1.0


def test_warmup_protects_early_steps():
    losses = [4.0, 6.0, 7.0, 5.0, 3.0, 2.0] + [1.0] * 20
    _, hit = feed(losses, warmup=6)
    assert hit == []


def _experiment(**train):
    raw = {
        "name": "stability",
        "task_name": "synthetic",
        "model": {"preset": "mamba2", "d_model": 32, "n_layer": 1, "headdim": 16, "d_state": 16},
        "task": {"kind": "induction", "train_length": 64, "eval_samples": 8},
        "train": {
            "steps": 40,
            "batch_size": 8,
            "warmup_steps": 2,
            "eval_every": 20,
            "checkpoint_every": 20,
            "log_every": 5,
            "stop_on_divergence": True,
            **train,
        },
        "tracking": {"log_model": False, "plots": False},
    }
    return build_experiment(raw, get_task("synthetic"), {})


@pytest.mark.slow
def test_real_runs_one_made_to_diverge_one_not(tracking_uri, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    client = MlflowClient(tracking_uri)
    wild = run_training(
        _experiment(lr=50.0, grad_clip=None, weight_decay=0.0),
        tracking_uri=tracking_uri,
        local=True,
        log=lambda _: None,
    )
    metrics = client.get_run(wild.run_id).data.metrics
    assert client.get_run(wild.run_id).info.status == "FINISHED"  # stopped, not failed
    assert metrics["diverged"] == 1.0 and 1 <= metrics["diverged_step"] < 40
    last_step = max(s for s, _ in metric_history(client, wild.run_id, "diverged"))
    assert last_step == metrics["diverged_step"]  # the run ended where it diverged

    calm = run_training(
        _experiment(lr=1e-3), tracking_uri=tracking_uri, local=True, log=lambda _: None
    )
    metrics = client.get_run(calm.run_id).data.metrics
    assert metrics["diverged"] == 0.0 and metrics["diverged_step"] == -1.0
    assert metrics["max_grad_norm"] > 0 and metrics["tokens_per_s"] > 0
    assert metrics["peak_memory_mb"] > 10
    assert [s for s, _ in metric_history(client, calm.run_id, "eval_accuracy")] == [20, 40]


def test_runs_started_in_the_same_second_keep_their_own_folders(
    tracking_uri, tmp_path, monkeypatch
):
    """Run folders are named to the second (or by ``run_name``): a second run of the same
    name gets its own folder, and does not take up the first one's checkpoints (this once
    made a calm run start from a diverged one's weights)."""
    monkeypatch.chdir(tmp_path)
    client = MlflowClient(tracking_uri)
    experiment = _experiment(lr=1e-3, steps=4, eval_every=2, checkpoint_every=2)
    named = experiment.model_copy(
        update={"tracking": experiment.tracking.model_copy(update={"run_name": "same"})}
    )
    first, second = (
        run_training(named, tracking_uri=tracking_uri, local=True, log=lambda _: None)
        for _ in range(2)
    )
    assert (first.run_name, second.run_name) == ("same", "same-2")
    assert Path(first.run_dir) != Path(second.run_dir)
    for run in (first, second):  # each trained its own 4 steps from the start
        steps = [s for s, _ in metric_history(client, run.run_id, "eval_accuracy")]
        assert steps == [2, 4]


def test_a_resumed_monitor_continues_where_it_stopped():
    losses = [4.0] * 5 + [3.0] * 20 + [9.0] * 30
    whole, hit = feed(losses, warmup=5)
    first = StabilityMonitor(warmup_steps=5)
    for step, loss in enumerate(losses[:20], start=1):
        first.update(step, loss, 1.0, tokens=100)
    import torch  # a checkpoint holds the state; it must load with weights_only=True

    path = Path(tempfile.mkdtemp()) / "state.pt"
    torch.save(first.state(), path)
    resumed = StabilityMonitor.restored(torch.load(path, weights_only=True))
    later = [
        step
        for step, loss in enumerate(losses[20:], start=21)
        if resumed.update(step, loss, 1.0, tokens=100)
    ]
    assert later == hit and resumed.start_loss == whole.start_loss
    assert resumed.max_loss_spike == whole.max_loss_spike and resumed.tokens == whole.tokens
