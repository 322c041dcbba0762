"""Shared fixtures of the pipeline tests: one local Ray per session (its own temp dir, no
auth, dashboard on 127.0.0.1), one MLflow sqlite store per session, and a tiny DNA
experiment on the phage lambda genome that trains in seconds."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).resolve().parents[1] / "data" / "dna"
LAMBDA = DATA / "lambda_virus.fa"
# A third-party task plugin (``toy``), installed for every Python that has this on its path.
PLUGINS = Path(__file__).resolve().parents[1] / "plugins"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_env():
    """Environment for every Ray process of the session (also the 2-node test's)."""
    # Short path: Ray's unix sockets live under it and must stay below ~100 characters.
    tmp = tempfile.mkdtemp(prefix="gfssm-ray-", dir="/tmp")
    values = {
        "RAY_TMPDIR": tmp,
        "RAY_AUTH_MODE": "disabled",
        "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
        "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in values.items():
            mp.setenv(key, value)
        mp.setenv(
            "PYTHONPATH",
            os.pathsep.join(filter(None, [str(PLUGINS), os.environ.get("PYTHONPATH")])),
        )
        mp.syspath_prepend(str(PLUGINS))
        for key in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "MLFLOW_TRACKING_URI"):
            mp.delenv(key, raising=False)
        yield Path(tmp)
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def local_ray(ray_env):
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=free_port(),
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory) -> str:
    """One sqlite store per session (creating the schema takes seconds)."""
    folder = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture(scope="session")
def lambda_fasta(tmp_path_factory) -> Path:
    """Phage lambda (48,502 bp) copied out of the repository, so its index goes there."""
    target = tmp_path_factory.mktemp("genome") / LAMBDA.name
    shutil.copy(LAMBDA, target)
    return target


@pytest.fixture
def tiny_dna(tmp_path, lambda_fasta) -> dict[str, Any]:
    """A raw DNA experiment: 1-layer model, 128-base windows of phage lambda, 6 steps on
    two workers of half a CPU, a checkpoint and an evaluation every 2 steps."""
    return {
        "name": "tiny",
        "task_name": "dna",
        "model": {
            "preset": "gfssm",
            "d_model": 32,
            "n_layer": 1,
            "d_state": 16,
            "headdim": 16,
            "chunk_size": 32,
            "fir_sizes": [4, 8],
        },
        "task": {
            "fasta": str(lambda_fasta),
            "window_length": 128,
            "markov_order": 2,
            "val_fraction": 0.1,
        },
        "train": {
            "steps": 6,
            "batch_size": 2,
            "lr": 3e-3,
            "warmup_steps": 2,
            "log_every": 1,
            "eval_every": 2,
            "checkpoint_every": 2,
            "eval_batches": 1,
            "num_workers": 2,
            "cpus_per_worker": 0.5,
            "use_gpu": False,
            "storage_path": str(tmp_path / "runs"),
        },
        "tracking": {"experiment": f"test-{uuid.uuid4().hex[:8]}", "log_model": True},
    }


@pytest.fixture
def digits(tmp_path) -> Path:
    """Lines of digits for the ``toy`` plugin task."""
    path = tmp_path / "digits.txt"
    rows = ["".join(str((a + s * i) % 10) for i in range(32)) for a in range(5) for s in (1, 2, 3)]
    path.write_text("\n".join(rows) + "\n")
    return path


def make_cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of a ``gfssm`` subprocess: the session's Ray settings, the plugin path."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env.update(extra or {})
    return env


@pytest.fixture
def cli_env(ray_env):
    """``cli_env(extra)``: the environment of a ``gfssm`` subprocess."""
    return make_cli_env


@pytest.fixture
def in_tmp_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def closed_port() -> int:
    """A loopback port nobody listens on."""
    return free_port()


# A 2-node Ray cluster on loopback ---------------------------------------------------------
def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _process_tree(markers: list[str]) -> set[int]:
    """Our processes whose command line names one of ``markers``, and their descendants."""
    children: dict[int, list[int]] = {}
    roots = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        pid = int(entry)
        try:
            if os.stat(f"/proc/{entry}").st_uid != os.getuid():
                continue
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        children.setdefault(ppid, []).append(pid)
        if any(m in _cmdline(pid) for m in markers):
            roots.append(pid)
    found: set[int] = set()
    stack = list(roots)
    while stack:
        pid = stack.pop()
        if pid not in found:
            found.add(pid)
            stack.extend(children.get(pid, []))
    return found


def _stop(markers: list[str]) -> None:
    """Stop only the processes this test started (never a bare ``ray stop``)."""
    pids = _process_tree(markers)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") for p in pids):
            time.sleep(0.2)


def _wait_http(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _ray_start(command: list[str], env: dict[str, str], temp_dir: str) -> None:
    """``ray start``; a failure raises with what Ray printed and its raylet's last lines."""
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    if done.returncode == 0:
        return
    logs = Path(temp_dir, "session_latest", "logs")
    tails = [f"--- ray start: exit {done.returncode}", done.stdout[-3000:], done.stderr[-3000:]]
    for name in ("raylet.err", "raylet.out", "gcs_server.err"):
        with contextlib.suppress(OSError):
            tails += [f"--- {name}", (logs / name).read_text(errors="replace")[-2000:]]
    raise RuntimeError("\n".join(tails))


@pytest.fixture(scope="module")
def loopback_cluster(ray_env) -> Iterator[dict[str, str]]:
    """Head (1 CPU) + a second node (1 CPU, its own temp dir), everything on 127.0.0.1."""
    ray_bin = str(Path(sys.executable).with_name("ray"))
    head_dir = tempfile.mkdtemp(prefix="gfssm-h-", dir="/tmp")
    node_dir = tempfile.mkdtemp(prefix="gfssm-n-", dir="/tmp")
    gcs, dash = free_port(), free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    common = [
        "--num-cpus=1",
        "--object-store-memory=100000000",
        "--disable-usage-stats",
        "--node-ip-address=127.0.0.1",
    ]
    markers = [head_dir, node_dir, f"127.0.0.1:{gcs}"]

    def own_ports() -> list[str]:
        """Ports Ray would otherwise take at fixed defaults (the dashboard agent's 52365
        is shared by every Ray on the host: a second one there has no job agent)."""
        return [
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--metrics-export-port={free_port()}",
        ]

    try:
        _ray_start(
            [
                ray_bin,
                "start",
                "--head",
                f"--port={gcs}",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={dash}",
                f"--ray-client-server-port={free_port()}",
                f"--temp-dir={head_dir}",
                *common,
                *own_ports(),
            ],
            env,
            head_dir,
        )
        # The node's ports are drawn afresh on a retry: one drawn by ``free_port`` can be
        # taken by a Ray process of the head between the draw and the node's start.
        for attempt in (1, 2):
            try:
                _ray_start(
                    [
                        ray_bin,
                        "start",
                        f"--address=127.0.0.1:{gcs}",
                        f"--temp-dir={node_dir}",
                        *common,
                        *own_ports(),
                    ],
                    env,
                    node_dir,
                )
                break
            except RuntimeError as error:
                if attempt == 2:
                    raise
                logging.getLogger(__name__).warning("second node, retried: %s", error)
                _stop([node_dir])
        url = f"http://127.0.0.1:{dash}"
        _wait_http(f"{url}/api/version", 60)
        yield {
            "gcs": f"127.0.0.1:{gcs}",
            "dashboard": url,
            "head_dir": head_dir,
            "node_dir": node_dir,
        }
    finally:
        _stop(markers)
        shutil.rmtree(head_dir, ignore_errors=True)
        shutil.rmtree(node_dir, ignore_errors=True)


# A real MLflow tracking server on 127.0.0.1 ---------------------------------------------
@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory, ray_env) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("mlflow")),
            "server",
            "--backend-store-uri",
            f"sqlite:///{folder / 'server.db'}",
            "--artifacts-destination",
            str(folder / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{url}/health", 90)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
