"""A third-party task gets everything through its entry point alone.

``toy`` (``tests/plugins``) is installed only by a ``*.dist-info`` folder on the path; gfssm
has never heard of it. From the user's folder, with relative paths, it trains on Ray (its
workers find ``digits.txt`` although they run elsewhere), its model is logged as an MLflow
model that serves predictions, its batch job runs on a Ray Data actor pool equal to the same
job in one process, a finished job reruns without Ray, and its data step runs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from gfssm.pipelines.cli import main
from gfssm.tasks import load_model, run_job_inline

TOY_EXPERIMENT = {
    "name": "toy-small",
    "task_name": "toy",
    "model": {
        "preset": "gfssm",
        "d_model": 32,
        "n_layer": 1,
        "d_state": 16,
        "headdim": 16,
        "chunk_size": 16,
        "fir_sizes": [4],
    },
    "task": {"data": "digits.txt"},
    "train": {
        "steps": 4,
        "batch_size": 4,
        "warmup_steps": 1,
        "eval_every": 2,
        "checkpoint_every": 2,
        "log_every": 2,
        "num_workers": 2,
        "cpus_per_worker": 0.5,
        "use_gpu": False,
        "storage_path": "runs",
    },
}


@pytest.mark.slow
def test_plugin_trains_logs_a_model_and_runs_its_batch_job(
    local_ray, tracking_uri, digits, monkeypatch, capsys
):
    import mlflow
    import pandas as pd
    from gfssm_toytask import ScoreJob, log_prob

    folder = digits.parent
    monkeypatch.chdir(folder)
    Path("toy.yaml").write_text(yaml.safe_dump(TOY_EXPERIMENT))
    assert main(["train", "toy", "--config", "toy.yaml", "--tracking-uri", tracking_uri]) == 0
    out = capsys.readouterr().out
    run_id = re.search(r"^run ([0-9a-f]{32}) ", out, re.M).group(1)
    assert "use it: gfssm score toy --model" in out

    client = MlflowClient(tracking_uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["task.data"] == str(folder / "digits.txt")  # resolved in the driver
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"

    # The model is an MLflow logged model of the run, and its pyfunc is the task's predictor.
    (logged,) = client.search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'"
    )
    assert logged.name == "model"
    best = load_model(client.download_artifacts(run_id, "best_checkpoint"))
    served = mlflow.pyfunc.load_model(logged.model_uri)
    predicted = served.predict(pd.DataFrame({"digits": ["0123456789", "97531"]}))
    expected = [log_prob(best.model, [int(c) for c in s]) for s in ("0123456789", "97531")]
    assert predicted["log_prob"].tolist() == pytest.approx(expected, rel=1e-5)

    # The batch job on an actor pool equals the same job in this process.
    args = ["score", "toy", "--model", run_id, "--input", "digits.txt", "--out", "scores.tsv"]
    assert main([*args, "--tracking-uri", tracking_uri, "--actors", "2"]) == 0
    inline = ScoreJob(digits, folder / "inline.tsv", 0.0)
    assert run_job_inline(inline, best, log=lambda _: None) == 0
    assert Path("scores.tsv").read_text() == Path("inline.tsv").read_text()
    capsys.readouterr()

    # A rerun of the finished job writes the outputs again without starting work.
    assert main([*args, "--tracking-uri", tracking_uri]) == 0
    assert "already done" in capsys.readouterr().out

    # Tune: a search space of the user's own, naming the experiment file by a relative path.
    space = {
        "experiment": "toy.yaml",
        "metric": "eval_loss",
        "mode": "min",
        "num_samples": 2,
        "grace_period": 2,
        "space": {"train.lr": {"choice": [1.0e-3, 3.0e-3]}},
    }
    Path("space.yaml").write_text(yaml.safe_dump(space))
    tune_args = ["tune", "toy", "--space", "space.yaml", "--tracking-uri", tracking_uri]
    assert main([*tune_args, "--out", "best.yaml"]) == 0
    assert "train the best: gfssm train toy --config best.yaml" in capsys.readouterr().out
    assert yaml.safe_load(Path("best.yaml").read_text())["train"]["lr"] in (1.0e-3, 3.0e-3)

    # Its data step, with a relative output path.
    assert main(["data", "toy-make", "--out", "more.txt", "--lines", "3"]) == 0
    assert len((folder / "more.txt").read_text().split()) == 3


def test_a_mistake_in_a_plugin_input_is_one_line(tracking_uri, digits, monkeypatch, capsys):
    monkeypatch.chdir(digits.parent)
    Path("bad.txt").write_text("0123\n01x3\n")
    Path("toy.yaml").write_text(yaml.safe_dump(TOY_EXPERIMENT))
    code = main(["train", "toy", "--config", "toy.yaml", "task.data=bad.txt"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == (
        f"gfssm train: error: {digits.parent / 'bad.txt'}: line 2: expected only digits, got '01x3'"
    )
