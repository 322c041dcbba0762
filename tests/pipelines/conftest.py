"""Shared fixtures of the pipeline tests: one local Ray per session (its own temp dir, no
auth, dashboard on 127.0.0.1), one MLflow sqlite store per session, and a tiny DNA
experiment on the phage lambda genome that trains in seconds."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).resolve().parents[1] / "data" / "dna"
LAMBDA = DATA / "lambda_virus.fa"


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


@pytest.fixture
def tiny_dna(tmp_path) -> dict[str, Any]:
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
            "fasta": str(LAMBDA),
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
def in_tmp_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def pytest_configure(config):
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
