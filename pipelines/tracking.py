"""MLflow: where runs go, reachability checks, experiments, run creation, params and tags.

The tracking URI is ``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else
``sqlite:///<cwd>/mlflow.db`` (an absolute path, so Ray workers in other directories write to
the same store). A server that does not answer is reported within seconds, never waited on.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

import gfssm
from gfssm.pipelines.errors import TrackingError

TRACKING_ENV = "MLFLOW_TRACKING_URI"
JOB_ID_ENV = "GFSSM_RAY_JOB_ID"
PARENT_TAG = "mlflow.parentRunId"
TAG_PREFIX = "gfssm."
ABORT_TAG = f"{TAG_PREFIX}abort_reason"
DRIVER_HOST_TAG = f"{TAG_PREFIX}driver_host"
DRIVER_PID_TAG = f"{TAG_PREFIX}driver_pid"
# MLflow 3's UI opens an experiment in its GenAI views unless told it holds model training.
EXPERIMENT_KIND_TAG = ("mlflow.experimentKind", "custom_model_development")
_PARAM_LIMIT = 6000  # characters MLflow keeps per param value
_BATCH_LIMIT = 100  # params per log_batch call


def default_tracking_uri(cwd: Path | None = None) -> str:
    return f"sqlite:///{(cwd or Path.cwd()).resolve() / 'mlflow.db'}"


def resolve_tracking_uri(explicit: str | None = None) -> str:
    """The URI to use, with relative sqlite paths made absolute."""
    uri = explicit or os.environ.get(TRACKING_ENV) or default_tracking_uri()
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = f"sqlite:///{Path(uri[len('sqlite:///') :]).resolve()}"
    return uri


def check_tracking_uri(uri: str, *, timeout: float = 5.0) -> None:
    """Fail fast, with advice, when ``uri`` cannot work (no server, no folder, file store)."""
    if uri.startswith(("http://", "https://")):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                if response.status != 200:
                    raise TrackingError(f"{url} answered HTTP {response.status}")
        except (urllib.error.URLError, OSError, TimeoutError) as err:
            raise TrackingError(
                f"MLflow tracking server {uri} is not reachable ({err}). Start one "
                f"(mlflow server --host 127.0.0.1 --port 5000), fix --tracking-uri / "
                f"{TRACKING_ENV}, or unset it to use ./mlflow.db"
            ) from None
    elif uri.startswith("sqlite:///"):
        folder = Path(uri[len("sqlite:///") :]).parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise TrackingError(f"tracking URI {uri}: folder {folder} is missing or read-only")
    elif uri.startswith("file:") or "://" not in uri:
        raise TrackingError(
            f"tracking URI {uri!r}: MLflow 3 no longer writes file stores; use "
            f"sqlite:///ABSOLUTE/PATH/mlflow.db or http://HOST:PORT"
        )


def tracking_client(explicit: str | None = None, *, check: bool = True) -> MlflowClient:
    """A client for the resolved URI (checked first unless ``check=False``)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = resolve_tracking_uri(explicit)
    if check:
        check_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri)


def ensure_experiment(client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created when missing (restored when deleted)."""
    found = client.get_experiment_by_name(name)
    if found is None:
        return client.create_experiment(name, tags=dict([EXPERIMENT_KIND_TAG]))
    if found.lifecycle_stage == "deleted":
        client.restore_experiment(found.experiment_id)
    if EXPERIMENT_KIND_TAG[0] not in found.tags:
        client.set_experiment_tag(found.experiment_id, *EXPERIMENT_KIND_TAG)
    return found.experiment_id


def git_commit() -> str | None:
    """The commit of the source tree gfssm runs from (editable installs), if any."""
    source = Path(gfssm.__file__).resolve().parents[1]
    try:
        out = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def ray_job_id() -> str | None:
    """The Ray Jobs submission id (set by ``gfssm submit``), else the Ray job id if connected."""
    if os.environ.get(JOB_ID_ENV):
        return os.environ[JOB_ID_ENV]
    try:
        import ray

        if ray.is_initialized():
            return ray.get_runtime_context().get_job_id()
    except Exception:  # no Ray context: nothing to tag
        return None
    return None


def run_tags(*, task: str, preset: str, model_preset: str, kind: str) -> dict[str, str]:
    tags = {
        f"{TAG_PREFIX}task": task,
        f"{TAG_PREFIX}preset": preset,
        f"{TAG_PREFIX}model_preset": model_preset,
        f"{TAG_PREFIX}kind": kind,
        f"{TAG_PREFIX}version": gfssm.__version__,
    }
    commit = git_commit()
    if commit:
        tags[f"{TAG_PREFIX}git_commit"] = commit
        tags["mlflow.source.git.commit"] = commit
    job = ray_job_id()
    if job:
        tags[f"{TAG_PREFIX}ray_job_id"] = job
    return tags


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mappings as ``a.b.c`` keys with string values (MLflow params)."""
    out: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = str(value)[:_PARAM_LIMIT]
    return out


def log_params(client: MlflowClient, run_id: str, params: Mapping[str, str]) -> None:
    items = [Param(k, v) for k, v in sorted(params.items())]
    for start in range(0, len(items), _BATCH_LIMIT):
        client.log_batch(run_id, params=items[start : start + _BATCH_LIMIT])


def log_metrics(
    client: MlflowClient, run_id: str, metrics: Mapping[str, float], *, step: int
) -> None:
    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
    for start in range(0, len(batch), _BATCH_LIMIT):
        client.log_batch(run_id, metrics=batch[start : start + _BATCH_LIMIT])


def set_tags(client: MlflowClient, run_id: str, tags: Mapping[str, str]) -> None:
    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def create_run(
    client: MlflowClient,
    *,
    experiment: str,
    run_name: str,
    tags: Mapping[str, str],
    parent_run_id: str | None = None,
) -> str:
    """A new RUNNING run (child of ``parent_run_id`` when given); returns its id."""
    all_tags = dict(tags)
    if parent_run_id:
        all_tags[PARENT_TAG] = parent_run_id
    run = client.create_run(ensure_experiment(client, experiment), run_name=run_name, tags=all_tags)
    return run.info.run_id


def metric_history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    """(step, value) of a metric, the last value logged for each step, by step."""
    latest: dict[int, tuple[int, float]] = {}
    for m in client.get_metric_history(run_id, key):
        seen = latest.get(m.step)
        if seen is None or m.timestamp >= seen[0]:
            latest[m.step] = (m.timestamp, m.value)
    return [(step, latest[step][1]) for step in sorted(latest)]


def driver_tags() -> dict[str, str]:
    """Which process drives a run, so a run whose driver died can be told from a live one."""
    return {DRIVER_HOST_TAG: socket.gethostname(), DRIVER_PID_TAG: str(os.getpid())}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mark_orphaned_runs(client: MlflowClient) -> list[str]:
    """RUNNING runs whose driver process on this host is gone (killed, machine slept) are
    marked KILLED with the reason; returns their ids. Runs of other hosts are left alone."""
    host = socket.gethostname()
    try:
        experiments = [e.experiment_id for e in client.search_experiments()]
        if not experiments:
            return []
        running = client.search_runs(
            experiments,
            filter_string=(
                f"attributes.status = 'RUNNING' and tags.`{DRIVER_HOST_TAG}` = '{host}'"
            ),
            max_results=200,
        )
    except Exception:  # a listing must never fail because of this tidy-up
        return []
    marked = []
    for run in running:
        pid = run.data.tags.get(DRIVER_PID_TAG, "")
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            set_tags(client, run.info.run_id, {ABORT_TAG: "the driver process ended (killed)"})
            client.set_terminated(run.info.run_id, status="KILLED")
            marked.append(run.info.run_id)
    return marked


def finish_run(client: MlflowClient, run_id: str, status: str = "FINISHED") -> None:
    client.set_terminated(run_id, status=status)


def child_runs(client: MlflowClient, parent_run_id: str, experiment_ids: Iterable[str]):
    return client.search_runs(
        list(experiment_ids), filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'"
    )
