"""The training driver: an MLflow run, a Ray ``TorchTrainer`` over the per-worker loop, and
the artifacts of the finished run.

Before anything starts, the task resolves the experiment's paths against the user's folder
and checks its inputs (:func:`~gfssm.pipelines.config.prepare_experiment`), so bad input is
one line in seconds. The driver then creates (or, on resume, reopens) the MLflow run and
hands its id to the workers, so rank 0 logs into it whether the worker group is fresh,
restarted after a failure (``FailureConfig``), or resumed by a new ``gfssm train --resume``.
Ray resumes a run that has the same name under the same storage path, so ``--resume`` reuses
the run's Ray name. ``local=True`` runs the same loop in this process.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from gfssm.pipelines import artifacts
from gfssm.pipelines.config import Experiment, build_experiment, prepare_experiment, read_yaml
from gfssm.pipelines.errors import TrainingError
from gfssm.pipelines.ray_session import connect, fit_to_cluster, resolve_use_gpu
from gfssm.pipelines.tracking import (
    ABORT_TAG,
    TAG_PREFIX,
    create_run,
    driver_tags,
    finish_run,
    flatten,
    log_params,
    mark_orphaned_runs,
    resolve_tracking_uri,
    run_tags,
    set_tags,
    tracking_client,
)
from gfssm.pipelines.train_loop import ABORT_KEY, train_loop_per_worker
from gfssm.tasks.base import Task, get_task

RAY_NAME_TAG = f"{TAG_PREFIX}ray_run_name"
STORAGE_TAG = f"{TAG_PREFIX}storage_path"
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class TrainResult:
    run_id: str
    run_name: str
    mlflow_experiment: str
    tracking_uri: str
    run_dir: str
    best_checkpoint: str | None
    metrics: dict[str, Any] = field(default_factory=dict)
    registered: str | None = None
    experiment_id: str = ""
    settings: Any = None  # the task settings the run trained with (paths resolved)


def storage_root(experiment: Experiment) -> str:
    """Absolute local folder (or the URI as given) where Ray keeps run folders."""
    path = experiment.train.storage_path
    return path if "://" in path else str(Path(path).expanduser().resolve())


def build_trainer(
    experiment: Experiment,
    *,
    run_id: str | None,
    tracking_uri: str | None,
    ray_name: str,
    storage_path: str,
    callbacks: Sequence[Any] = (),
    ray_log_level: str = "WARNING",
):
    """A ``TorchTrainer`` running :func:`train_loop_per_worker` for ``experiment``."""
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    train = experiment.train
    use_gpu = resolve_use_gpu(experiment)
    resources: dict[str, float] = {"CPU": train.cpus_per_worker}
    if use_gpu:
        resources["GPU"] = 1
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "experiment": experiment.model_dump(mode="json"),
            "run_id": run_id,
            "tracking_uri": tracking_uri,
        },
        scaling_config=ScalingConfig(
            num_workers=train.num_workers, use_gpu=use_gpu, resources_per_worker=resources
        ),
        run_config=RunConfig(
            name=ray_name,
            storage_path=storage_path,
            checkpoint_config=CheckpointConfig(
                num_to_keep=train.keep_checkpoints,
                checkpoint_score_attribute=train.select_metric,
                checkpoint_score_order=train.select_mode,
            ),
            failure_config=FailureConfig(max_failures=train.max_failures),
            callbacks=list(callbacks),
            logging_config=LoggingConfig(log_level=ray_log_level),
            # Ray Train's print patch would show every worker print twice.
            worker_runtime_env={"env_vars": {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}},
        ),
    )


def default_run_name(experiment: Experiment) -> str:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return experiment.tracking.run_name or f"{experiment.task_name}-{experiment.name}-{stamp}"


def claim_run_name(name: str, storage: str) -> str:
    """``name``, or ``name-2``, ``name-3``... when a run folder of that name exists: two runs
    started in the same second (or given the same ``run_name``) must not share a folder, or
    the second would take up the first one's checkpoints. A local folder is claimed by
    creating it, so drivers started at once cannot both take it."""
    if "://" in storage:
        return name
    root = Path(storage)
    root.mkdir(parents=True, exist_ok=True)
    candidate, n = name, 1
    while True:
        try:
            (root / candidate).mkdir()
            return candidate
        except FileExistsError:
            n += 1
            candidate = f"{name}-{n}"


def mlflow_experiment_name(experiment: Experiment) -> str:
    return experiment.tracking.experiment or experiment.task_name


def start_run(
    client: MlflowClient,
    experiment: Experiment,
    task: Task,
    *,
    run_name: str,
    storage_path: str,
    kind: str = "train",
    parent_run_id: str | None = None,
) -> str:
    """Create the MLflow run of a training: tags, flattened params, the resolved config."""
    model_config = experiment.gfssm_config(task)
    tags = run_tags(
        task=task.name, preset=experiment.name, model_preset=experiment.preset, kind=kind
    )
    tags.update({RAY_NAME_TAG: run_name, STORAGE_TAG: storage_path, **driver_tags()})
    tags["mlflow.source.name"] = f"gfssm {kind} {task.name} ({experiment.name})"
    run_id = create_run(
        client,
        experiment=mlflow_experiment_name(experiment),
        run_name=run_name,
        tags=tags,
        parent_run_id=parent_run_id,
    )
    params = flatten({"train": experiment.train.model_dump(mode="json")})
    params.update(flatten({"task": experiment.task}))
    params.update(flatten({"model": model_config.to_dict()}))
    params["preset"] = experiment.name
    log_params(client, run_id, params)
    artifacts.log_experiment(
        client, run_id, experiment, json.dumps(model_config.to_dict(), indent=2)
    )
    return run_id


def find_resumable(client: MlflowClient, experiment: Experiment, which: str | bool):
    """The MLflow run to resume: ``which`` is a run id, a run name, or True for the latest
    training run of this experiment file."""
    exp = client.get_experiment_by_name(mlflow_experiment_name(experiment))
    if exp is None:
        raise TrainingError(
            f"--resume: no MLflow experiment {mlflow_experiment_name(experiment)!r}"
        )
    if isinstance(which, str) and _RUN_ID.match(which):
        return client.get_run(which)
    query = f"tags.`{TAG_PREFIX}kind` = 'train'"
    if isinstance(which, str):
        query += f" and attributes.run_name = '{which}'"
    else:
        query += f" and tags.`{TAG_PREFIX}preset` = '{experiment.name}'"
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=query,
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        what = which if isinstance(which, str) else f"experiment file {experiment.name!r}"
        raise TrainingError(f"--resume: no earlier training run found for {what}")
    return runs[0]


def experiment_of_run(client: MlflowClient, run_id: str, task: Task, overrides) -> Experiment:
    """The resolved experiment a run logged, with new overrides applied on top."""
    local = client.download_artifacts(run_id, artifacts.CONFIG_ARTIFACT)
    return build_experiment(read_yaml(Path(local)), task, overrides, source=f"run {run_id}")


def run_training(
    experiment: Experiment,
    *,
    tracking_uri: str | None = None,
    ray_address: str | None = None,
    resume: str | bool | None = None,
    resume_overrides: dict[str, Any] | None = None,
    local: bool = False,
    base_dir: Path | None = None,
    log=print,
) -> TrainResult:
    """Train ``experiment`` on Ray (or in this process) and record it in MLflow; see the
    module docstring."""
    task = get_task(experiment.task_name)
    base_dir = Path.cwd() if base_dir is None else base_dir
    if not resume:  # checked before MLflow or Ray start: a bad path costs seconds
        experiment = prepare_experiment(experiment, task, base_dir)
    client = tracking_client(tracking_uri)
    uri = resolve_tracking_uri(tracking_uri)
    mark_orphaned_runs(client)
    if resume:
        previous = find_resumable(client, experiment, resume)
        experiment = experiment_of_run(client, previous.info.run_id, task, resume_overrides)
        experiment = prepare_experiment(experiment, task, base_dir)
    if not local:
        # Ray is up and sized before any MLflow run is opened: no run left dangling.
        dashboard = connect(ray_address)
        if dashboard:
            log(f"Ray dashboard: {dashboard}")
        if not (ray_address or os.environ.get("RAY_ADDRESS")):
            experiment = fit_to_cluster(experiment, log)
    if resume:
        run_id = previous.info.run_id
        ray_name = previous.data.tags.get(RAY_NAME_TAG, previous.info.run_name)
        storage = previous.data.tags.get(STORAGE_TAG, storage_root(experiment))
        client.update_run(run_id, status="RUNNING")
        set_tags(client, run_id, driver_tags())
        log(f"resuming run {ray_name} (MLflow run {run_id})")
    else:
        storage = storage_root(experiment)
        ray_name = claim_run_name(default_run_name(experiment), storage)
        run_id = start_run(client, experiment, task, run_name=ray_name, storage_path=storage)
    log(f"MLflow run {run_id} ({ray_name}) in experiment {mlflow_experiment_name(experiment)!r}")
    loop_config = {
        "experiment": experiment.model_dump(mode="json"),
        "run_id": run_id,
        "tracking_uri": uri,
    }
    with _terminate_as_interrupt():
        if local:
            result = fit_locally(loop_config, experiment, Path(storage) / ray_name, client, run_id)
        else:
            trainer = build_trainer(
                experiment, run_id=run_id, tracking_uri=uri, ray_name=ray_name, storage_path=storage
            )
            result = fit_or_fail(trainer, client, run_id, experiment)
    finished = finalize(
        client, experiment, result, run_id=run_id, run_name=ray_name, tracking_uri=uri
    )
    return replace(finished, settings=experiment.settings(task))


class _terminate_as_interrupt:
    """SIGTERM (a scheduler or ``kill``) ends the driver like Ctrl-C: the run is marked
    KILLED instead of staying RUNNING."""

    def __enter__(self):
        try:
            self.previous = signal.signal(signal.SIGTERM, self._raise)
        except ValueError:  # not the main thread (e.g. inside a Tune trial)
            self.previous = None
        return self

    @staticmethod
    def _raise(signum, frame):
        raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def fit_locally(loop_config, experiment: Experiment, run_dir: Path, client, run_id: str):
    """The training loop in this process; same checkpoints, metrics and abort handling."""
    from gfssm.pipelines.train_context import LocalContext
    from gfssm.pipelines.train_loop import run_loop

    train = experiment.train
    ctx = LocalContext(
        run_dir,
        keep=train.keep_checkpoints,
        metric=train.select_metric,
        mode=train.select_mode,
        use_gpu=train.use_gpu is not False,
    )
    try:
        run_loop(loop_config, ctx)
    except KeyboardInterrupt:
        finish_run(client, run_id, "KILLED")
        raise
    except Exception as err:
        set_tags(client, run_id, {ABORT_TAG: f"{type(err).__name__}: {err}"[:5000]})
        finish_run(client, run_id, "FAILED")
        raise
    result = ctx.result()
    _raise_if_aborted(client, run_id, result)
    return result


def _raise_if_aborted(client: MlflowClient, run_id: str, result) -> None:
    reason = (result.metrics or {}).get(ABORT_KEY) or client.get_run(run_id).data.tags.get(
        ABORT_TAG
    )
    if reason:
        set_tags(client, run_id, {ABORT_TAG: reason})
        finish_run(client, run_id, "FAILED")
        where = f" (last checkpoint: {result.checkpoint.path})" if result.checkpoint else ""
        raise TrainingError(f"{reason}{where}")


def fit_or_fail(trainer, client: MlflowClient, run_id: str, experiment: Experiment):
    """``trainer.fit()``; failures and aborts mark the MLflow run and raise TrainingError."""
    import ray.train

    try:
        result = trainer.fit()
    except ray.train.TrainingFailedError as err:
        set_tags(client, run_id, {ABORT_TAG: str(err)[:5000]})
        finish_run(client, run_id, "FAILED")
        raise TrainingError(
            f"training failed (after up to train.max_failures={experiment.train.max_failures} "
            f"restarts from the last checkpoint): {err}"
        ) from err
    except KeyboardInterrupt:
        finish_run(client, run_id, "KILLED")
        raise
    _raise_if_aborted(client, run_id, result)
    return result


def finalize(
    client: MlflowClient,
    experiment: Experiment,
    result,
    *,
    run_id: str,
    run_name: str,
    tracking_uri: str,
) -> TrainResult:
    """Plots, best checkpoint, pyfunc (and registration) into the run; mark it finished."""
    train = experiment.train
    best = result.get_best_checkpoint(metric=train.select_metric, mode=train.select_mode)
    best = best or result.checkpoint
    best_path = None
    registered = None
    if experiment.tracking.plots:
        artifacts.plot_curves(client, run_id)
    if best is not None:
        with best.as_directory() as folder:
            artifacts.log_best_checkpoint(client, run_id, Path(folder))
            if experiment.tracking.log_model:
                registered = artifacts.log_pyfunc(
                    client, run_id, Path(folder), register_as=experiment.tracking.register_as
                )
        best_path = best.path
    if registered:
        set_tags(client, run_id, {f"{TAG_PREFIX}registered_model": registered})
    finish_run(client, run_id, "FINISHED")
    return TrainResult(
        run_id=run_id,
        run_name=run_name,
        mlflow_experiment=mlflow_experiment_name(experiment),
        tracking_uri=tracking_uri,
        run_dir=str(result.path),
        best_checkpoint=best_path,
        metrics=dict(result.metrics or {}),
        registered=registered,
        experiment_id=client.get_run(run_id).info.experiment_id,
    )
