"""The ``gfssm`` command as a user runs it: a real process, in a folder of the user's own,
with relative paths and mistakes. Each mistake is one line on stderr and exit code 2; Ctrl-C
and a full disk keep every finished shard, and the same command run again resumes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from gfssm import GFSSMConfig
from gfssm.tasks import get_task, save_model

GFSSM = [sys.executable, "-m", "gfssm.pipelines"]


@pytest.fixture
def gfssm(cli_env):
    """``gfssm(args, cwd)``: run the command line in a new process, as a user does."""

    def run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*GFSSM, *args],
            cwd=cwd,
            env=cli_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


def one_error_line(result: subprocess.CompletedProcess, command: str) -> str:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"gfssm {command}: error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture
def user_dir(tmp_path) -> Path:
    folder = tmp_path / "me"
    folder.mkdir()
    return folder


@pytest.fixture
def toy_model(tmp_path, ray_env) -> Path:
    """An untrained model of the ``toy`` plugin task, saved as a model directory."""
    task = get_task("toy")
    settings = task.settings({"data": "digits.txt"})
    config = GFSSMConfig.preset(
        "gfssm", d_model=32, n_layer=1, d_state=16, headdim=16, chunk_size=16, vocab_size=10
    )
    torch.manual_seed(0)
    model = task.build_model(config, settings)
    return save_model(tmp_path / "model", task=task, model=model, config=config, settings=settings)


def test_missing_fasta_is_one_line_before_ray_or_mlflow_start(user_dir, gfssm):
    result = gfssm(["train", "dna", "task.fasta=my_genome.fa"], user_dir)
    line = one_error_line(result, "train")
    assert (
        line == f"gfssm train: error: task.fasta my_genome.fa: no such file (looked in {user_dir})"
    )
    assert not (user_dir / "mlflow.db").exists() and not (user_dir / "runs").exists()
    dry = gfssm(["train", "dna", "--dry-run", "task.fasta=my_genome.fa"], user_dir)
    one_error_line(dry, "train")


def test_misspelled_key_suggests_the_closest(user_dir, gfssm):
    result = gfssm(["train", "dna", "--dry-run", "train.stesp=10"], user_dir)
    assert result.returncode == 2
    assert "train.stesp: unknown key (did you mean 'steps'?)" in result.stderr
    unknown = gfssm(["train", "dan"], user_dir)
    assert "no task named 'dan' (did you mean 'dna'?)" in one_error_line(unknown, "train")


def test_relative_fasta_trains_locally_from_the_users_folder(user_dir, lambda_fasta, gfssm):
    shutil.copy(lambda_fasta, user_dir / "my_genome.fa")
    result = gfssm(
        [
            "train",
            "dna",
            "--local",
            "task.fasta=my_genome.fa",
            "task.window_length=128",
            "task.markov_order=2",
            "model.d_model=32",
            "model.n_layer=1",
            "train.steps=2",
            "train.eval_every=2",
            "train.checkpoint_every=2",
            "train.eval_batches=1",
        ],
        user_dir,
    )
    assert result.returncode == 0, result.stderr
    assert "finished: eval_" in result.stdout
    assert (user_dir / "mlflow.db").exists() and (user_dir / "runs").is_dir()
    (hint,) = [line for line in result.stdout.splitlines() if "use it:" in line]
    assert f"--fasta {user_dir / 'my_genome.fa'} " in hint  # the user's genome, not E. coli


def test_bad_model_reference_is_one_line(user_dir, gfssm):
    result = gfssm(
        ["score", "toy", "--model", "nowhere", "--input", "x.txt", "--out", "s.tsv"], user_dir
    )
    assert "--model nowhere: no such directory" in one_error_line(result, "score toy")


@pytest.mark.slow
def test_ctrl_c_keeps_finished_shards_and_the_rerun_resumes(user_dir, toy_model, digits, cli_env):
    shutil.copy(digits, user_dir / "digits.txt")
    shards = user_dir / "scores.tsv.shards"
    args = ["score", "toy", "--model", str(toy_model), "--input", "digits.txt"]
    args += ["--out", "scores.tsv", "--delay", "0.5"]
    ray_tmp = tempfile.mkdtemp(prefix="gfssm-c-", dir="/tmp")
    env = cli_env({"RAY_TMPDIR": ray_tmp})
    proc = subprocess.Popen(
        [*GFSSM, *args], cwd=user_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        while proc.poll() is None and len(list(shards.glob("*.bin"))) < 1:
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err.decode()
    kept = len(list(shards.glob("*.bin")))
    total = len(digits.read_text().split())
    assert 1 <= kept < total
    assert b"run the same command again to resume" in out + err
    assert not list(shards.glob("*.partial"))

    rerun = subprocess.run(
        [*GFSSM, *args], cwd=user_dir, env=env, capture_output=True, text=True, timeout=300
    )
    shutil.rmtree(ray_tmp, ignore_errors=True)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{total} work items ({kept} already done)" in rerun.stdout
    assert len((user_dir / "scores.tsv").read_text().splitlines()) == total


def _pool_workers(ray_tmp: str) -> list[int]:
    """Pids of the Ray Data pool actors of the Ray that runs with ``RAY_TMPDIR=ray_tmp``."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if b"ray::MapWorker" not in (proc / "cmdline").read_bytes():
                continue
            if f"RAY_TMPDIR={ray_tmp}".encode() in (proc / "environ").read_bytes():
                pids.append(int(proc.name))
        except (OSError, ValueError):
            continue
    return pids


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_the_job_finishes(user_dir, toy_model, digits, cli_env):
    """A pool actor killed mid-job (as the OOM killer would): one line says so, new workers
    take the items left, and the output is complete."""
    shutil.copy(digits, user_dir / "digits.txt")
    shards = user_dir / "scores.tsv.shards"
    args = ["score", "toy", "--model", str(toy_model), "--input", "digits.txt"]
    args += ["--out", "scores.tsv", "--delay", "0.5", "--actors", "1"]
    ray_tmp = tempfile.mkdtemp(prefix="gfssm-k-", dir="/tmp")
    proc = subprocess.Popen(
        [*GFSSM, *args],
        cwd=user_dir,
        env=cli_env({"RAY_TMPDIR": ray_tmp}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while proc.poll() is None and len(list(shards.glob("*.bin"))) < 1:
            time.sleep(0.2)
        (worker,) = _pool_workers(ray_tmp)
        os.kill(worker, signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, err
    assert f"a worker process died (pid {worker}: " in out + err
    assert "Traceback" not in err and "core_worker" not in err
    total = len(digits.read_text().split())
    assert len((user_dir / "scores.tsv").read_text().splitlines()) == total


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root")
def test_a_full_disk_ends_in_one_line_and_leaves_no_partial_shard(
    user_dir, toy_model, digits, cli_env
):
    """The output folder is a 40 KiB tmpfs (in a private mount namespace): it fills up
    part-way through the shards; the same command after making room finishes the job."""
    shutil.copy(digits, user_dir / "digits.txt")
    out = user_dir / "out"
    out.mkdir()
    args = f"score toy --model {toy_model} --input digits.txt --out out/scores.tsv"
    script = f"""
        mount -t tmpfs -o size=40k tmpfs {out}
        {sys.executable} -m gfssm.pipelines {args} > first.out 2> first.err
        echo $? > first.rc
        ls {out}/scores.tsv.shards > listing.txt
        mount -o remount,size=4m {out}
        {sys.executable} -m gfssm.pipelines {args} > second.out 2> second.err
        echo $? > second.rc
        cp {out}/scores.tsv result.tsv
    """
    ray_tmp = tempfile.mkdtemp(prefix="gfssm-d-", dir="/tmp")
    subprocess.run(
        ["unshare", "-m", "sh", "-c", script],
        cwd=user_dir,
        env=cli_env({"RAY_TMPDIR": ray_tmp}),
        check=True,
        timeout=600,
    )
    shutil.rmtree(ray_tmp, ignore_errors=True)
    first_err = (user_dir / "first.err").read_text()
    assert (user_dir / "first.rc").read_text().strip() == "2", first_err
    errors = [line for line in first_err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "disk full while writing" in errors[0], first_err
    assert "Traceback" not in first_err
    listing = (user_dir / "listing.txt").read_text().split()
    assert not [name for name in listing if name.endswith(".partial")]
    kept = len([name for name in listing if name.endswith(".bin")])
    total = len(digits.read_text().split())
    assert 1 <= kept < total
    second_out = (user_dir / "second.out").read_text()
    assert (user_dir / "second.rc").read_text().strip() == "0", (
        user_dir / "second.err"
    ).read_text()
    assert f"({kept} already done)" in second_out
    assert len((user_dir / "result.tsv").read_text().splitlines()) == total


@pytest.mark.slow
def test_a_killed_driver_does_not_leave_its_run_running(user_dir, digits, cli_env, gfssm):
    """SIGKILL cannot be caught: the next gfssm command on this host marks the run KILLED."""
    import yaml
    from mlflow.tracking import MlflowClient

    shutil.copy(digits, user_dir / "digits.txt")
    experiment = {
        "name": "toy-long",
        "task_name": "toy",
        "model": {"preset": "gfssm", "d_model": 32, "n_layer": 1, "d_state": 16},
        "task": {"data": "digits.txt"},
        "train": {
            "steps": 1_000_000,
            "batch_size": 2,
            "eval_every": 1000,
            "checkpoint_every": 1000,
        },
        "tracking": {"experiment": "killed"},
    }
    experiment["model"].update({"headdim": 16, "chunk_size": 16, "fir_sizes": [4]})
    (user_dir / "toy.yaml").write_text(yaml.safe_dump(experiment))
    proc = subprocess.Popen(
        [*GFSSM, "train", "toy", "--local", "--config", "toy.yaml"],
        cwd=user_dir,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for line in proc.stdout:  # the run exists once this line is printed
            if line.startswith("MLflow run "):
                run_id = line.split()[2]
                break
        else:
            pytest.fail("gfssm train ended before creating its run")
        proc.kill()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    client = MlflowClient(f"sqlite:///{user_dir / 'mlflow.db'}")
    assert client.get_run(run_id).info.status == "RUNNING"
    listing = gfssm(["runs", "list"], user_dir)
    assert listing.returncode == 0, listing.stderr
    run = client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["gfssm.abort_reason"] == "the driver process ended (killed)"
