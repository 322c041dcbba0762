"""Which MLflow run an evaluation is recorded under, for every form ``--model`` takes,
against a real sqlite tracking store with a registered model version and an alias, and
the record itself (over HTTP to a real ``mlflow server``: ``test_runs.py``)."""

from __future__ import annotations

import argparse

from mlflow.tracking import MlflowClient

from gfssm.pipelines.evaluation_runs import record_evaluation
from gfssm.pipelines.model_ref import model_run_id


def test_model_run_id_for_each_form_of_model_reference(tracking_uri, tmp_path):
    client = MlflowClient(tracking_uri)
    experiment = client.create_experiment(
        f"eval-ref-{tmp_path.name}", artifact_location=str(tmp_path / "artifacts")
    )
    run = client.create_run(experiment).info.run_id
    name = f"genome-lm-{tmp_path.name}"
    client.create_registered_model(name)
    version = client.create_model_version(name, f"runs:/{run}/model", run_id=run)
    client.set_registered_model_alias(name, "champion", version.version)

    assert model_run_id(client, run) == run
    assert model_run_id(client, f"runs:/{run}/best_checkpoint") == run
    assert model_run_id(client, f"models:/{name}/{version.version}") == run
    assert model_run_id(client, f"models:/{name}@champion") == run
    assert model_run_id(client, str(tmp_path)) is None  # a model folder
    assert model_run_id(client, "runs") is None


def test_record_evaluation_is_a_finished_child_in_the_model_runs_experiment(tracking_uri, tmp_path):
    client = MlflowClient(tracking_uri)
    experiment = client.create_experiment(
        f"eval-record-{tmp_path.name}", artifact_location=str(tmp_path / "artifacts")
    )
    model_run = client.create_run(experiment, tags={"gfssm.task": "asr"}).info.run_id
    args = argparse.Namespace(model=model_run, manifest="set.jsonl", beam=None, handler=print)
    metrics = {"wer": 0.25, "cer": 0.125, "auroc/model/missense_vs_synonymous": 0.6}
    child = client.get_run(record_evaluation(client, model_run, "eval asr", args, metrics))
    assert child.info.status == "FINISHED" and child.info.experiment_id == experiment
    assert child.data.tags["mlflow.parentRunId"] == model_run
    assert child.data.tags["gfssm.kind"] == "eval" and child.data.tags["gfssm.task"] == "asr"
    assert child.data.metrics == metrics
    # options as params: unset ones and the handler left out
    assert child.data.params == {"model": model_run, "manifest": "set.jsonl"}
