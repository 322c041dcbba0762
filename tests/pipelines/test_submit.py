"""``gfssm submit`` to a real 2-node Ray cluster on loopback (the project shipped as a
wheel), ``gfssm jobs``, and fast, clear errors for addresses that do not answer."""

from __future__ import annotations

import re
import zipfile

import pytest
import yaml
from mlflow.tracking import MlflowClient

from gfssm.pipelines.cli import main
from gfssm.pipelines.submit import build_wheel, job_entrypoint


def test_shipped_wheel_has_no_requirements_and_keeps_entry_points(tmp_path):
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        metadata = zf.read(next(n for n in names if n.endswith("METADATA"))).decode()
        entry_points = zf.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
        record = zf.read(next(n for n in names if n.endswith("RECORD"))).decode()
    assert "Requires-Dist" not in metadata and "Name: gfssm" in metadata
    assert "dna = gfssm.tasks.dna.task:DnaTask" in entry_points
    assert any(n.startswith("gfssm/ray_configs/experiments/dna/") for n in names)
    metadata_line = next(line for line in record.splitlines() if "METADATA" in line)
    assert metadata_line.endswith(f",{len(metadata.encode())}")


def test_entrypoint_runs_the_module_not_a_console_script():
    assert job_entrypoint(["--", "gfssm", "train", "dna", "train.lr=1e-3"]) == (
        "python -m gfssm.pipelines train dna train.lr=1e-3"
    )


@pytest.mark.slow
def test_submit_to_a_two_node_cluster_runs_to_the_end(
    loopback_cluster, tiny_dna, tmp_path, tracking_uri, capsys
):
    # One worker per node (1 CPU each): DDP across the two nodes over loopback.
    raw = {**tiny_dna, "train": {**tiny_dna["train"], "steps": 2, "cpus_per_worker": 1.0}}
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(raw))
    address = loopback_cluster["dashboard"]
    code = main(
        [
            "submit",
            "--address",
            address,
            "--tracking-uri",
            tracking_uri,
            "--",
            "gfssm",
            "train",
            "dna",
            "--config",
            str(config),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    submission = re.search(r"submitted (gfssm-\S+)", out).group(1)
    assert f"job {submission}: SUCCEEDED" in out and "step 2/2" in out

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(tiny_dna["tracking"]["experiment"])
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.tags["gfssm.ray_job_id"] == submission

    assert main(["jobs", "list", "--address", address]) == 0
    listed = capsys.readouterr().out
    assert submission in listed and "SUCCEEDED" in listed
    assert main(["jobs", "logs", submission, "--address", address]) == 0
    assert "eval at step 2" in capsys.readouterr().out
    assert main(["jobs", "stop", submission, "--address", address]) == 0
    assert "already finished" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["submit", "--address", "http://127.0.0.1:{port}", "--", "gfssm", "runs", "list"],
        ["jobs", "list", "--address", "127.0.0.1:{port}"],
        ["runs", "list", "--tracking-uri", "http://127.0.0.1:{port}"],
        ["train", "dna", "--address", "127.0.0.1:{port}", "--tracking-uri", "{tracking}"],
    ],
)
def test_unreachable_addresses_fail_fast_with_a_clear_error(
    argv, closed_port, tracking_uri, ray_env, capsys
):
    filled = [a.format(port=closed_port, tracking=tracking_uri) for a in argv]
    assert main(filled) == 2
    err = capsys.readouterr().err
    assert f"127.0.0.1:{closed_port}" in err and "not reachable" in err
