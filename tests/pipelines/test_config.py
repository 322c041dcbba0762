"""Experiments and overrides: validated once, errors list what is valid (no Ray needed)."""

from __future__ import annotations

from importlib import resources

import pytest
import yaml

from gfssm.pipelines.bundled import bundled_experiments, load_experiment_file, load_space_file
from gfssm.pipelines.cli import main
from gfssm.pipelines.config import build_experiment, parse_overrides, parse_value
from gfssm.pipelines.errors import ExperimentError
from gfssm.pipelines.tune import load_space, split_overrides
from gfssm.tasks import get_task


def test_values_parse_as_yaml_and_numbers():
    assert parse_value("3e-4") == pytest.approx(3e-4)
    assert parse_value("[4, 8]") == [4, 8]
    assert parse_value("true") is True and parse_value("null") is None
    assert parse_value("gfssm") == "gfssm"
    assert parse_overrides(["train.lr=1e-3", "model.d_model=64"]) == {
        "train.lr": pytest.approx(1e-3),
        "model.d_model": 64,
    }


def test_overrides_reach_every_section(tiny_dna):
    task = get_task("dna")
    exp = build_experiment(
        tiny_dna,
        task,
        parse_overrides(
            [
                "train.steps=9",
                "model.d_model=64",
                "task.window_length=256",
                "model.fir_sizes=[4]",
                "tracking.register_as=lam",
            ]
        ),
    )
    assert exp.train.steps == 9 and exp.task["window_length"] == 256
    config = exp.gfssm_config(task)
    assert config.d_model == 64 and config.fir_sizes == (4,) and config.vocab_size > 0
    assert exp.tracking.register_as == "lam"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("train.lrr=1", "train.lrr: unknown key (did you mean 'lr'?); valid keys: batch_size"),
        ("model.d_modl=3", "model.d_modl: unknown key (did you mean 'd_model'?); valid keys:"),
        ("task.window=5", "task.window: unknown key (did you mean 'window_length'?); valid keys:"),
        ("task.fastaa=x", "task.fastaa: unknown key (did you mean 'fasta'?)"),
        ("train.steps=abc", "train.steps: Input should be a valid integer"),
        ("train.steps=0", "train.steps: Input should be greater than or equal to 1"),
        ("model.headdim=7", "must be divisible by headdim"),
        ("model.preset=mamba3", "valid: ('gfssm', 'mamba2', 'transformer')"),
        ("train.eval_every=4", "must be a multiple of eval_every=4"),
        ("task.window_length=2", "task.window_length: Input should be greater than or equal"),
    ],
)
def test_bad_overrides_say_what_is_valid(tiny_dna, override, expected):
    with pytest.raises(ExperimentError, match=None) as err:
        build_experiment(tiny_dna, get_task("dna"), parse_overrides([override]))
    assert expected in str(err.value)
    if "unknown key" in expected:
        assert "valid keys" in str(err.value)


@pytest.mark.parametrize("item", ["lr=3", "train.lr", "=3", "optim.lr=3"])
def test_malformed_overrides(item):
    with pytest.raises(ExperimentError, match="override"):
        parse_overrides([item])


@pytest.mark.parametrize("task_name", ["dna", "asr"])
def test_every_bundled_experiment_and_space_validates(task_name):
    task = get_task(task_name)
    names = bundled_experiments(task_name)
    assert "quickstart" in names and len(names) >= 2
    for name in names:
        raw, source = load_experiment_file(task_name, name)
        exp = build_experiment(raw, task, {}, source=source)
        assert exp.name == name and exp.task_name == task_name
        exp.gfssm_config(task)
    task = get_task("dna")
    quick = build_experiment(*load_experiment_file("dna", None)[:1], task)
    assert quick.name == "quickstart" and quick.task.get("fasta") is None  # bundled genome
    folder = resources.files("gfssm.ray_configs") / "tune"
    for node in folder.iterdir():
        if node.name.endswith(".yaml"):
            space = load_space(yaml.safe_load(node.read_text()), {}, node.name)
            raw, _ = load_experiment_file(node.name[:-5], space.experiment)
            for key, spec in space.space.items():
                ((kind, values),) = spec.items()
                build_experiment(raw, get_task(node.name[:-5]), {key: values[0]})


def test_tune_overrides_split_and_validate():
    tune_values, rest = split_overrides(["tune.num_samples=2", "train.steps=4"])
    assert tune_values == {"num_samples": 2} and rest == {"train.steps": 4}
    raw, source = load_space_file("dna", None)
    with pytest.raises(ExperimentError, match="num_sample: unknown key"):
        load_space(raw, {"num_sample": 2}, source)
    with pytest.raises(ExperimentError, match="expected one of"):
        load_space({"space": {"train.lr": {"normal": [0, 1]}}}, {}, "x.yaml")


def test_cli_dry_run_prints_the_resolved_experiment(capsys):
    assert main(["train", "dna", "--dry-run", "train.steps=7", "model.d_model=96"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["steps"] == 7 and printed["model"]["d_model"] == 96
    assert printed["name"] == "quickstart"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "dna", "--config", "missing.yaml"], "missing.yaml: no such experiment file"),
        (["train", "dna", "--config", "nonesuch"], "bundled: ecoli15, long, quickstart, small"),
        (["train", "dna", "--dry-run", "train.lr=fast"], "train.lr: Input should be a valid"),
        (["train", "nosuchtask"], "no task named 'nosuchtask'; installed tasks:"),
        (["tune", "dna", "--space", "nope"], "no bundled search space 'nope'"),
    ],
)
def test_cli_errors_are_one_clear_line(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_bad_yaml_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntrain:\n  steps: [1, 2\n")
    assert main(["train", "dna", "--config", str(bad), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "line" in err


def test_cluster_files_parse_and_their_commands_validate(capsys):
    import shlex

    folder = resources.files("gfssm.ray_configs") / "cluster"
    launcher = yaml.safe_load((folder / "gpu-cluster.yaml").read_text())
    head = " ".join(launcher["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "RAY_AUTH_MODE=token" in head
    assert all("RAY_AUTH_MODE=token" in c for c in launcher["worker_start_ray_commands"][1:])
    cluster = yaml.safe_load((folder / "kuberay-raycluster.yaml").read_text())
    assert cluster["kind"] == "RayCluster" and cluster["spec"]["authOptions"]["mode"] == "token"
    job = yaml.safe_load((folder / "kuberay-rayjob.yaml").read_text())
    assert job["kind"] == "RayJob" and job["spec"]["rayClusterSpec"]["authOptions"]
    args = shlex.split(job["spec"]["entrypoint"])
    assert args[:3] == ["python", "-m", "gfssm.pipelines"]
    assert main([*args[3:], "--dry-run"]) == 0  # the job's command is a valid experiment
    assert yaml.safe_load(capsys.readouterr().out)["train"]["num_workers"] == 2
