"""``gfssm runs`` against a real ``mlflow server`` on 127.0.0.1: runs logged over HTTP with
the pipeline's own tracking helpers are read back as tables; an evaluation is recorded
under its model's run over HTTP."""

from __future__ import annotations

import argparse

import pytest

from gfssm.pipelines.cli import main
from gfssm.pipelines.errors import TrackingError
from gfssm.pipelines.evaluation_runs import record_evaluation
from gfssm.pipelines.tracking import (
    check_tracking_uri,
    create_run,
    finish_run,
    flatten,
    log_metrics,
    log_params,
    resolve_tracking_uri,
    run_tags,
    tracking_client,
)


def _log_run(client, name: str, lr: float, losses: list[float], parent: str | None = None):
    tags = run_tags(task="dna", preset="quickstart", model_preset="gfssm", kind="train")
    run_id = create_run(
        client, experiment="http-runs", run_name=name, tags=tags, parent_run_id=parent
    )
    log_params(client, run_id, flatten({"train": {"lr": lr, "steps": len(losses)}}))
    for step, loss in enumerate(losses, 1):
        log_metrics(client, run_id, {"train_loss": loss, "eval_loss": loss + 0.1}, step=step)
    client.log_text(run_id, "name: quickstart\n", "config/experiment.yaml")
    finish_run(client, run_id)
    return run_id


@pytest.mark.slow
def test_runs_logged_over_http_are_listed_shown_and_compared(mlflow_server, capsys):
    assert mlflow_server.startswith("http://127.0.0.1:")
    client = tracking_client(mlflow_server)
    first = _log_run(client, "lr-small", 1e-3, [2.0, 1.5, 1.25])
    second = _log_run(client, "lr-large", 3e-3, [2.0, 1.2, 1.05])

    assert main(["runs", "list", "--tracking-uri", mlflow_server]) == 0
    listed = capsys.readouterr().out
    assert first in listed and second in listed and "FINISHED" in listed
    assert "lr-small" in listed and "1.35" in listed and "1.25" in listed  # eval, train loss

    assert main(["runs", "show", "lr-large", "--tracking-uri", mlflow_server]) == 0
    shown = capsys.readouterr().out
    assert second in shown and "train.lr" in shown and "0.003" in shown
    assert "gfssm.task" in shown and "config/" in shown

    assert main(["runs", "compare", first, second, "--tracking-uri", mlflow_server]) == 0
    compared = capsys.readouterr().out
    assert "param train.lr" in compared and "0.001" in compared and "1.05" in compared
    assert "param train.steps" not in compared  # equal params are not repeated

    assert main(["runs", "list", "--experiment", "nope", "--tracking-uri", mlflow_server]) == 2
    assert "no experiment 'nope'; experiments:" in capsys.readouterr().err


@pytest.mark.slow
def test_record_evaluation_over_http(mlflow_server):
    client = tracking_client(mlflow_server)
    tags = run_tags(task="dna", preset="ecoli15", model_preset="gfssm", kind="train")
    model_run = create_run(client, experiment="http-eval", run_name="trained", tags=tags)
    finish_run(client, model_run)
    args = argparse.Namespace(model=model_run, genbank="genome.gbk.gz")
    child = record_evaluation(client, model_run, "eval dna-vep", args, {"auroc/model/x": 0.75})
    run = tracking_client(mlflow_server).get_run(child)
    assert run.info.status == "FINISHED" and run.data.metrics == {"auroc/model/x": 0.75}
    assert run.data.tags["mlflow.parentRunId"] == model_run
    assert run.data.tags["gfssm.preset"] == "ecoli15"  # taken from the model's run


def test_tracking_uri_defaults_and_checks(tmp_path, monkeypatch, closed_port):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert resolve_tracking_uri("sqlite:///./x.db") == f"sqlite:///{tmp_path.resolve() / 'x.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/m.db")
    assert resolve_tracking_uri() == "sqlite:////elsewhere/m.db"
    with pytest.raises(TrackingError, match="is missing or read-only"):
        check_tracking_uri("sqlite:////no/such/folder/mlflow.db")
    with pytest.raises(TrackingError, match="no longer writes file stores"):
        check_tracking_uri("file:///tmp/mlruns")
    with pytest.raises(TrackingError, match="not reachable"):
        check_tracking_uri(f"http://127.0.0.1:{closed_port}")
