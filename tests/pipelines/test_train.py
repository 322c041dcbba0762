"""Ray Train with real workers, real checkpoints and a real MLflow store.

The failure test proves "no lost or repeated step": a 2-worker run whose last rank raises
once at step 5 is restored from the step-4 checkpoint, and its per-step losses and final
weights equal those of the same run without a failure, and MLflow's raw history holds each
step once. The same loop runs in-process (``local=True``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from gfssm.kernels.testing import assert_close
from gfssm.pipelines.checkpoint import read_checkpoint
from gfssm.pipelines.config import build_experiment
from gfssm.pipelines.errors import TrainingError
from gfssm.pipelines.tracking import metric_history
from gfssm.pipelines.train import run_training
from gfssm.tasks import get_task, load_model


def _train(raw, tracking_uri, **overrides):
    experiment = build_experiment(raw, get_task("dna"), overrides)
    return run_training(experiment, tracking_uri=tracking_uri, log=lambda _: None)


def _raw_steps(client, run_id: str, key: str) -> list[int]:
    """Every logged value's step, in logging order (no de-duplication)."""
    history = client.get_metric_history(run_id, key)
    return [m.step for m in sorted(history, key=lambda m: (m.timestamp, m.step))]


def _final_weights(result):
    """Weights and state of the run's newest checkpoint (folder names carry the time)."""
    folders = sorted(p for p in Path(result.run_dir).glob("checkpoint_*") if p.is_dir())
    return read_checkpoint(folders[-1])


@pytest.mark.slow
def test_worker_failure_resumes_without_lost_or_repeated_steps(local_ray, tracking_uri, tiny_dna):
    reference = _train(tiny_dna, tracking_uri)
    failing = _train(tiny_dna, tracking_uri, **{"train.fail_at_step": 5})
    client = MlflowClient(tracking_uri)

    # The failing run was restored once, from the step-4 checkpoint, into the same MLflow run.
    assert metric_history(client, failing.run_id, "restored_from_step") == [(4, 4.0)]
    assert metric_history(client, reference.run_id, "restored_from_step") == []
    ref_losses = metric_history(client, reference.run_id, "train_loss")
    losses = metric_history(client, failing.run_id, "train_loss")
    assert [s for s, _ in losses] == [1, 2, 3, 4, 5, 6] == [s for s, _ in ref_losses]
    # MLflow's own history: each step once, in order (metrics reach MLflow at checkpoints,
    # so the steps between the last checkpoint and the failure are not logged twice).
    assert _raw_steps(client, failing.run_id, "train_loss") == [1, 2, 3, 4, 5, 6]
    assert_close(torch.tensor([v for _, v in losses]), torch.tensor([v for _, v in ref_losses]))

    # Same final weights: every step was applied exactly once.
    (ref_w, ref_state), (w, state) = _final_weights(reference), _final_weights(failing)
    assert ref_state.step == state.step == 6
    for name, value in ref_w.items():
        assert_close(w[name], value, msg=name)
    assert client.get_run(failing.run_id).info.status == "FINISHED"


@pytest.mark.slow
def test_run_is_tracked_and_resumable(local_ray, tracking_uri, tiny_dna):
    raw = {**tiny_dna, "train": {**tiny_dna["train"], "num_workers": 1, "steps": 4}}
    first = _train(raw, tracking_uri)
    client = MlflowClient(tracking_uri)
    run = client.get_run(first.run_id)
    tags, params = run.data.tags, run.data.params
    assert tags["gfssm.task"] == "dna" and tags["gfssm.preset"] == "tiny"
    assert tags["gfssm.model_preset"] == "gfssm" and "gfssm.ray_job_id" in tags
    assert params["model.d_model"] == "32" and params["train.steps"] == "4"
    assert params["task.window_length"] == "128" and params["model.vocab_size"] != "0"
    assert client.get_experiment(run.info.experiment_id).name == tiny_dna["tracking"]["experiment"]
    eval_steps = [s for s, _ in metric_history(client, first.run_id, "eval_bits_per_base")]
    assert eval_steps == [2, 4]
    assert metric_history(client, first.run_id, "eval_markov_bits_per_base")
    files = {a.path for a in client.list_artifacts(first.run_id)}
    assert {"config", "plots", "best_checkpoint"} <= files
    # The model is an MLflow model of the run (its "Logged models"), registrable.
    (logged,) = client.search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{first.run_id}'"
    )
    assert logged.name == "model" and logged.tags["gfssm.task"] == "dna"
    plots = {a.path for a in client.list_artifacts(first.run_id, "plots")}
    assert "plots/train_loss.png" in plots
    assert (
        Path(client.download_artifacts(first.run_id, "plots/train_loss.png")).read_bytes()[:8]
        == b"\x89PNG\r\n\x1a\n"
    )

    # Every checkpoint is a model directory, loadable with weights_only=True.
    loaded = load_model(first.best_checkpoint)
    assert loaded.task.name == "dna" and loaded.config.d_model == 32
    weights, state = read_checkpoint(Path(first.best_checkpoint))
    assert set(weights) == set(loaded.model.state_dict()) and state.step in (2, 4)
    assert state.optimizer["state"] and state.scheduler["last_epoch"] == state.step
    assert "torch" in state.rng and state.experiment["name"] == "tiny"

    # --resume continues the same MLflow run from its last checkpoint.
    experiment = build_experiment(raw, get_task("dna"), {})
    resumed = run_training(
        experiment,
        tracking_uri=tracking_uri,
        resume=first.run_id,
        resume_overrides={"train.steps": 6},
        log=lambda _: None,
    )
    assert resumed.run_id == first.run_id and resumed.run_dir == first.run_dir
    assert metric_history(client, first.run_id, "restored_from_step") == [(4, 4.0)]
    assert _raw_steps(client, first.run_id, "train_loss") == [1, 2, 3, 4, 5, 6]
    assert client.get_run(first.run_id).info.status == "FINISHED"


@pytest.mark.slow
def test_too_many_nonfinite_steps_abort_with_a_clear_message(local_ray, tracking_uri, tiny_dna):
    raw = {
        **tiny_dna,
        "train": {
            **tiny_dna["train"],
            "num_workers": 1,
            "lr": 1e12,
            "warmup_steps": 0,
            "grad_clip": None,
            "max_nonfinite": 0,
        },
    }
    with pytest.raises(TrainingError, match=r"non-finite loss or gradient \(limit train"):
        _train(raw, tracking_uri)
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(tiny_dna["tracking"]["experiment"])
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FAILED" and "gfssm.abort_reason" in run.data.tags


def test_local_training_runs_the_same_loop_in_process(tracking_uri, tiny_dna):
    """``--local``: no Ray; checkpoints, best-checkpoint selection, the MLflow run and the
    logged model as on Ray, and a resume continues from the local checkpoint."""
    raw = {**tiny_dna, "train": {**tiny_dna["train"], "steps": 4, "keep_checkpoints": 1}}
    experiment = build_experiment(raw, get_task("dna"), {})
    first = run_training(experiment, tracking_uri=tracking_uri, local=True, log=lambda _: None)
    client = MlflowClient(tracking_uri)
    run = client.get_run(first.run_id)
    assert run.info.status == "FINISHED"
    assert _raw_steps(client, first.run_id, "train_loss") == [1, 2, 3, 4]
    kept = sorted(p.name for p in Path(first.run_dir).glob("checkpoint_*"))
    assert kept[-1] == "checkpoint_000004" and len(kept) <= 2  # best 1 + the latest
    assert load_model(first.best_checkpoint).config.d_model == 32
    resumed = run_training(
        experiment,
        tracking_uri=tracking_uri,
        local=True,
        resume=first.run_id,
        resume_overrides={"train.steps": 6},
        log=lambda _: None,
    )
    assert resumed.run_id == first.run_id
    assert metric_history(client, first.run_id, "restored_from_step") == [(4, 4.0)]
    assert _raw_steps(client, first.run_id, "train_loss") == [1, 2, 3, 4, 5, 6]
    _, state = _final_weights(resumed)
    assert state.step == 6


def test_time_budget_stops_with_an_evaluation_and_a_checkpoint(tracking_uri, tiny_dna):
    raw = {**tiny_dna, "train": {**tiny_dna["train"], "steps": 100_000}}
    # A budget far below one step's time: the run stops after its first step, evaluated
    # and checkpointed, instead of running 100,000 steps.
    experiment = build_experiment(raw, get_task("dna"), {"train.time_budget_minutes": 1e-6})
    lines: list[str] = []
    result = run_training(experiment, tracking_uri=tracking_uri, local=True, log=lines.append)
    _, state = _final_weights(result)
    assert state.step == 1 and "eval_bits_per_base" in result.metrics


def test_bad_input_fails_in_the_driver_before_any_run(tracking_uri, tiny_dna, tmp_path):
    from gfssm.tasks import TaskInputError

    raw = {**tiny_dna, "task": {**tiny_dna["task"], "fasta": "missing.fa"}}
    experiment = build_experiment(raw, get_task("dna"), {})
    with pytest.raises(TaskInputError, match=r"missing\.fa: no such file"):
        run_training(experiment, tracking_uri=tracking_uri, base_dir=tmp_path, log=print)
    exp = MlflowClient(tracking_uri).get_experiment_by_name(tiny_dna["tracking"]["experiment"])
    assert exp is None  # no run (not even a FAILED one) was created


def test_worker_groups_are_sized_to_the_local_ray(local_ray, tiny_dna):
    """2 workers x 1 CPU (+ a Tune trial's driver) on a 2-CPU Ray: shrunk to fit, said once;
    two trials at a time share the CPUs; a group that fits is left alone."""
    from gfssm.pipelines.ray_session import fit_to_cluster

    wide = {"train.num_workers": 2, "train.cpus_per_worker": 1}
    experiment = build_experiment(tiny_dna, get_task("dna"), wide)
    said: list[str] = []
    one = fit_to_cluster(experiment, said.append, extra_cpus=0.25)
    assert one.train.num_workers * one.train.cpus_per_worker + 0.25 <= 2
    assert len(said) == 1 and "do not fit in this Ray's 2 CPU" in said[0]
    two = fit_to_cluster(experiment, said.append, extra_cpus=0.25, share=2)
    assert 2 * (two.train.num_workers * two.train.cpus_per_worker + 0.25) <= 2
    small = build_experiment(tiny_dna, get_task("dna"), {})  # 2 x 0.5 CPU
    assert fit_to_cluster(small, said.append) == small and len(said) == 2
