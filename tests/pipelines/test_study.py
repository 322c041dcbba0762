"""``gfssm study`` through real Ray Tune and a real MLflow store: a 2-trial grid gives one
parent run with a child per trial, parameter-matched contenders, a summary table, CSV and
plots (as files and MLflow artifacts), and running it again resumes instead of redoing."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from gfssm.pipelines.cli import main
from gfssm.pipelines.study import STUDY_TAG, TRIAL_TAG, fingerprint, run_study
from gfssm.pipelines.study_report import mean_ci, wilson
from gfssm.pipelines.study_spec import CONTENDERS, expand, load_spec
from gfssm.pipelines.tracking import PARENT_TAG
from gfssm.tasks import get_task

SPEC = {
    "name": "tiny-study",
    "experiment": {
        "task_name": "synthetic",
        "model": {"d_model": 32, "n_layer": 1, "headdim": 16, "d_state": 16, "chunk_size": 32},
        "task": {"kind": "induction", "train_length": 64, "eval_samples": 8},
        "train": {
            "steps": 6,
            "batch_size": 4,
            "warmup_steps": 2,
            "log_every": 2,
            "eval_every": 3,
            "checkpoint_every": 3,
            "keep_checkpoints": 1,
        },
        "tracking": {"plots": False},
    },
    "contenders": ["gfssm", "transformer"],
    "learning_rates": [3.0e-3],
    "seeds": [0],
    "metric": "eval_accuracy",
    "mode": "max",
    "length_metric_prefix": "eval_accuracy_L",
    "trial_cpus": 1,
}


def test_grid_matches_parameters_and_covers_every_cell():
    spec = load_spec(
        {**SPEC, "contenders": ["all"], "seeds": [0, 1], "lengths": [64, 128]},
        "test",
        {"length_key": "task.train_length"},
    )
    trials = expand(spec, get_task("synthetic"), "test")
    assert len(trials) == len(CONTENDERS) * 2 * 2
    counts = {t.contender: t.parameters for t in trials}
    largest = max(counts.values())
    # matched to within one gated-MLP unit per layer (3 * d_model weights)
    assert all(largest - n <= 3 * 32 for n in counts.values()), counts
    assert {t.experiment.task["train_length"] for t in trials} == {64, 128}
    by_name = {t.contender: t.experiment for t in trials}
    assert by_name["transformer"].model["preset"] == "transformer"
    assert by_name["gfssm-floor"].model["A_floor"] == 0.0
    assert tuple(by_name["mamba2+fir"].model["fir_sizes"]) == (4, 8, 16, 32)
    assert all(t.experiment.train.stop_on_divergence for t in trials)
    # A changed study is a new study: resuming never mixes trials of two settings.
    first = fingerprint({t.key: t.experiment for t in trials})
    assert first == fingerprint({t.key: t.experiment for t in trials})
    changed = load_spec(
        {**SPEC, "contenders": ["all"], "seeds": [0, 1], "lengths": [64, 128]},
        "test",
        {"length_key": "task.train_length", "learning_rates": [1.0e-2]},
    )
    other = expand(changed, get_task("synthetic"), "test")
    assert fingerprint({t.key: t.experiment for t in other}) != first


def test_intervals():
    low, high = wilson(0, 4)
    assert low == 0.0 and 0.4 < high < 0.5  # 0/4 still allows a rate near one half
    low, high = wilson(4, 4)
    assert high == pytest.approx(1.0) and 0.5 < low < 0.6
    mean, half = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.303 * 1.0 / 3**0.5, rel=1e-3)


@pytest.mark.slow
def test_two_trials_on_tune_with_mlflow_then_resume(local_ray, tracking_uri, tmp_path):
    task = get_task("synthetic")
    spec = load_spec(SPEC, "test", {})
    out = tmp_path / "summary"

    def study(log):
        return run_study(
            SPEC,
            "test",
            spec=spec,
            task=task,
            experiment_overrides={},
            tracking_uri=tracking_uri,
            out=out,
            base_dir=tmp_path,
            log=log,
        )

    lines: list[str] = []
    outcome = study(lines.append)
    assert outcome.failed == [] and outcome.ran == 2
    client = MlflowClient(tracking_uri)
    parent = client.get_run(outcome.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags[STUDY_TAG] == "tiny-study"
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'"
    )
    assert sorted(c.data.tags[TRIAL_TAG] for c in children) == [
        "gfssm_lr0.003_seed0",
        "transformer_lr0.003_seed0",
    ]
    for child in children:
        assert child.info.status == "FINISHED"
        metrics = child.data.metrics
        assert {"diverged", "max_grad_norm", "tokens_per_s", "peak_memory_mb"} <= set(metrics)
        assert {"eval_accuracy_L64", "eval_accuracy_L128", "eval_accuracy_L256"} <= set(metrics)
        assert int(child.data.tags["gfssm.parameters"]) > 0
    assert sum(line.startswith("[") and "finished" in line for line in lines) == 2

    table = (out / "summary.md").read_text()
    assert "| gfssm |" in table and "| transformer |" in table and "@256" in table
    with (out / "trials.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {r["status"] for r in rows} == {"FINISHED"} and len(rows) == 2
    for name in ("divergence_vs_lr.png", "loss_curves.png", "metric_vs_length.png"):
        assert (out / name).stat().st_size > 1000
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "study")}
    assert "study/summary.md" in logged and "study/divergence_vs_lr.png" in logged

    # The same study again: nothing reruns, the report is rebuilt from MLflow.
    again: list[str] = []
    second = study(again.append)
    assert second.parent_run_id == outcome.parent_run_id and second.ran == 0
    assert any("2 trial(s) done" in line for line in again)


def test_bad_study_files_are_one_line_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("s.yaml").write_text("name: s\nexperiment: {task_name: synthetic}\nlearning_rates: [1]\n"
                              "contenders: [gfssm, mamba3]\n")  # fmt: skip
    assert main(["study", "s.yaml", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown contender 'mamba3'" in err[0]
    assert main(["study", "nosuch", "--dry-run"]) == 2
    assert "no bundled study 'nosuch'" in capsys.readouterr().err
    Path("t.yaml").write_text("name: t\nexperiment: {task_name: synthetic}\nlearning_rate: [1]\n")
    assert main(["study", "t.yaml", "--dry-run"]) == 2
    assert "learning_rate: unknown key" in capsys.readouterr().err
