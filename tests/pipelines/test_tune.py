"""Ray Tune with ASHA over the training driver: two trials, one MLflow parent run with a
child run per trial, and the best experiment written as a ready-to-train file."""

from __future__ import annotations

import pytest
import yaml
from mlflow.tracking import MlflowClient

from gfssm.pipelines.config import build_experiment
from gfssm.pipelines.tracking import PARENT_TAG, metric_history
from gfssm.pipelines.tune import run_tune
from gfssm.tasks import get_task


@pytest.mark.slow
def test_two_trials_with_mlflow_child_runs_and_best_experiment(
    local_ray, tracking_uri, tiny_dna, tmp_path
):
    base = tmp_path / "tiny.yaml"
    base.write_text(
        yaml.safe_dump({**tiny_dna, "train": {**tiny_dna["train"], "steps": 4, "num_workers": 1}})
    )
    space = {
        "experiment": str(base),
        "metric": "eval_bits_per_base",
        "num_samples": 1,
        "max_concurrent_trials": 1,
        "grace_period": 2,
        "space": {"train.lr": {"grid": [1.0e-3, 1.0e-2]}},
    }
    out = tmp_path / "best.yaml"
    outcome = run_tune(
        "dna",
        space_raw=space,
        space_source="test space",
        overrides=[],
        tracking_uri=tracking_uri,
        out=out,
        log=lambda _: None,
    )
    client = MlflowClient(tracking_uri)
    parent = client.get_run(outcome.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["gfssm.kind"] == "tune"
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'"
    )
    assert len(children) == 2 == len(outcome.trials)
    assert {c.data.params["train.lr"] for c in children} == {"0.001", "0.01"}
    for child in children:
        assert child.data.tags["gfssm.kind"] == "trial" and "gfssm.trial_id" in child.data.tags
        assert child.info.status in ("FINISHED", "KILLED")
        assert metric_history(client, child.info.run_id, "eval_bits_per_base")
    assert {t["run_id"] for t in outcome.trials} == {c.info.run_id for c in children}

    # The best trial by the metric, written out as an experiment that trains as is.
    best = min(outcome.trials, key=lambda t: t["metric"])
    assert outcome.best_run_id == best["run_id"]
    assert outcome.best_overrides == {"train.lr": best["train.lr"]}
    written = yaml.safe_load(out.read_text())
    experiment = build_experiment(written, get_task("dna"), {})
    assert experiment.train.lr == pytest.approx(best["train.lr"])
    assert experiment.name == "tiny-tuned" and experiment.train.steps == 4
    assert "best_experiment.yaml" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert parent.data.metrics["best_eval_bits_per_base"] == pytest.approx(best["metric"])
