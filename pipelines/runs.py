"""``gfssm runs``: tables of MLflow runs from any tracking URI (list, show, compare)."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import sys
from collections.abc import Sequence

from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from rich.console import Console
from rich.table import Table

from gfssm.pipelines.errors import RunNotFound
from gfssm.pipelines.tracking import TAG_PREFIX

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_HEADLINE_METRICS = ("eval_loss", "eval_bits_per_base", "eval_wer", "eval_cer", "train_loss")


def console() -> Console:
    """Wide enough that ids are never cut when output goes to a file or a pipe."""
    if sys.stdout.isatty():
        return Console()
    return Console(width=max(shutil.get_terminal_size().columns, 240), color_system=None)


def _when(ms: int | None) -> str:
    if not ms:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M")


def _duration(run: Run) -> str:
    if not run.info.start_time or not run.info.end_time:
        return ""
    seconds = (run.info.end_time - run.info.start_time) / 1000
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.4g}"


def find_run(client: MlflowClient, ref: str) -> Run:
    """A run by id or by run name (the newest of that name in any experiment)."""
    if _RUN_ID.match(ref):
        try:
            return client.get_run(ref)
        except Exception as err:
            raise RunNotFound(f"no run with id {ref} at {client.tracking_uri}: {err}") from None
    ids = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        ids,
        filter_string=f"attributes.run_name = '{ref}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise RunNotFound(f"no run with id or name {ref!r} at {client.tracking_uri}")
    return runs[0]


def list_runs(
    client: MlflowClient,
    *,
    experiment: str | None = None,
    task: str | None = None,
    limit: int = 20,
) -> list[Run]:
    if experiment:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            names = ", ".join(e.name for e in client.search_experiments()) or "none"
            raise RunNotFound(f"no experiment {experiment!r}; experiments: {names}")
        ids = [found.experiment_id]
    else:
        ids = [e.experiment_id for e in client.search_experiments()]
    query = f"tags.`{TAG_PREFIX}task` = '{task}'" if task else ""
    return client.search_runs(
        ids, filter_string=query, order_by=["attributes.start_time DESC"], max_results=limit
    )


def runs_table(client: MlflowClient, runs: Sequence[Run]) -> Table:
    names = {e.experiment_id: e.name for e in client.search_experiments()}
    present = [m for m in _HEADLINE_METRICS if any(m in r.data.metrics for r in runs)]
    table = Table(title=f"MLflow runs at {client.tracking_uri}", show_lines=False)
    for column in ("run id", "name", "experiment", "status", "preset", "started", "took"):
        table.add_column(column, no_wrap=column in ("run id", "name"))
    for metric in present:
        table.add_column(metric, justify="right")
    for run in runs:
        tags = run.data.tags
        parent = tags.get("mlflow.parentRunId")
        name = run.info.run_name or ""
        table.add_row(
            run.info.run_id,
            f"  └ {name}" if parent else name,
            names.get(run.info.experiment_id, run.info.experiment_id),
            run.info.status,
            tags.get(f"{TAG_PREFIX}preset", ""),
            _when(run.info.start_time),
            _duration(run),
            *(_fmt(run.data.metrics.get(m)) for m in present),
        )
    return table


def show_run(client: MlflowClient, run: Run, out: Console) -> None:
    info = run.info
    head = Table(title=f"run {info.run_id}", show_header=False)
    head.add_column("field")
    head.add_column("value", overflow="fold")
    head.add_row("name", info.run_name or "")
    head.add_row("experiment", client.get_experiment(info.experiment_id).name)
    head.add_row("status", info.status)
    head.add_row("started", _when(info.start_time))
    head.add_row("took", _duration(run))
    head.add_row("artifacts", info.artifact_uri)
    for key, value in sorted(run.data.tags.items()):
        if key.startswith(TAG_PREFIX) or key == "mlflow.parentRunId":
            head.add_row(key, value)
    out.print(head)
    metrics = Table(title="metrics (last value)")
    metrics.add_column("metric")
    metrics.add_column("value", justify="right")
    for key, value in sorted(run.data.metrics.items()):
        metrics.add_row(key, _fmt(value))
    out.print(metrics)
    params = Table(title="params")
    params.add_column("param")
    params.add_column("value", overflow="fold")
    for key, value in sorted(run.data.params.items()):
        params.add_row(key, value)
    out.print(params)
    files = [a.path + ("/" if a.is_dir else "") for a in client.list_artifacts(info.run_id)]
    out.print("artifacts: " + (", ".join(sorted(files)) or "none"))


def compare_runs(runs: Sequence[Run]) -> Table:
    """Params that differ between the runs, and every metric, side by side."""
    table = Table(title="comparison")
    table.add_column("")
    for run in runs:
        table.add_column(run.info.run_name or run.info.run_id[:8], overflow="fold")
    table.add_row("run id", *(r.info.run_id for r in runs))
    table.add_row("status", *(r.info.status for r in runs))
    keys = sorted(set().union(*(r.data.params for r in runs)))
    for key in keys:
        values = [r.data.params.get(key, "") for r in runs]
        if len(set(values)) > 1:
            table.add_row(f"param {key}", *values)
    metrics = sorted(set().union(*(r.data.metrics for r in runs)))
    for key in metrics:
        table.add_row(key, *(_fmt(r.data.metrics.get(key)) for r in runs))
    return table
