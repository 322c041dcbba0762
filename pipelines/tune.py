"""Hyperparameter search: Ray Tune with ASHA over the training driver.

A search-space file (``ray_configs/tune/<task>.yaml``) names a base experiment, the metric and
the distributions of override keys. Each trial is a function that builds the experiment with
its sampled overrides, opens an MLflow child run under the search's parent run, and fits a
``TorchTrainer`` whose reports reach Tune through ``TuneReportCallback``. ASHA stops weak
trials early (their child runs are then marked KILLED by the driver). The best trial's
experiment is written as a ready-to-train YAML file.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gfssm.pipelines.config import build_experiment, parse_overrides
from gfssm.pipelines.errors import ExperimentError
from gfssm.pipelines.tracking import (
    TAG_PREFIX,
    child_runs,
    create_run,
    finish_run,
    log_metrics,
    resolve_tracking_uri,
    run_tags,
    set_tags,
    tracking_client,
)
from gfssm.tasks.base import get_task

DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice", "grid")


class SearchSpace(BaseModel):
    """A search-space file: base experiment, objective, ASHA and the distributions."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    experiment: str = Field("quickstart", description="base experiment (bundled name or path)")
    metric: str | None = Field(None, description="default: the experiment's train.select_metric")
    mode: Literal["min", "max"] | None = None
    num_samples: int = Field(8, ge=1)
    max_concurrent_trials: int = Field(1, ge=1)
    grace_period: int = Field(100, ge=1, description="steps before ASHA may stop a trial")
    reduction_factor: float = Field(2.0, gt=1)
    trial_cpus: float = Field(0.25, ge=0, description="CPUs of each trial's driver")
    seed: int = 0
    space: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("space")
    @classmethod
    def _one_distribution_each(cls, space: dict[str, dict[str, Any]]):
        for key, spec in space.items():
            if (
                not isinstance(spec, dict)
                or len(spec) != 1
                or next(iter(spec)) not in DISTRIBUTIONS
            ):
                raise ValueError(
                    f"space.{key}: expected one of {{{', '.join(DISTRIBUTIONS)}}}: [...], "
                    f"e.g. {{loguniform: [1.0e-4, 1.0e-2]}}; got {spec!r}"
                )
            kind, args = next(iter(spec.items()))
            if kind in ("uniform", "loguniform", "randint") and (
                not isinstance(args, list) or len(args) != 2
            ):
                raise ValueError(f"space.{key}: {kind} takes [low, high], got {args!r}")
            if kind in ("choice", "grid") and (not isinstance(args, list) or not args):
                raise ValueError(f"space.{key}: {kind} takes a non-empty list, got {args!r}")
        return space


def load_space(raw: dict[str, Any], tune_overrides: dict[str, Any], source: str) -> SearchSpace:
    values = {**raw, **tune_overrides}
    try:
        return SearchSpace(**values)
    except ValidationError as err:
        lines = [f"{source}: invalid search space:"]
        for problem in err.errors():
            where = ".".join(str(p) for p in problem["loc"])
            if problem["type"] == "extra_forbidden":
                lines.append(
                    f"  {where}: unknown key; valid: {', '.join(SearchSpace.model_fields)}"
                )
            else:
                lines.append(f"  {where}: {problem['msg']}")
        raise ExperimentError("\n".join(lines)) from None


def split_overrides(items: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``tune.KEY=V`` go to the search space, the rest to the experiment."""
    tune_items = [i[len("tune.") :] for i in items if i.startswith("tune.")]
    rest = [i for i in items if not i.startswith("tune.")]
    tune_values = {}
    for key, value in parse_overrides([f"train.{i}" for i in tune_items]).items():
        tune_values[key[len("train.") :]] = value
    return tune_values, parse_overrides(rest)


def param_space(space: SearchSpace) -> dict[str, Any]:
    from ray import tune

    makers = {
        "uniform": lambda a: tune.uniform(float(a[0]), float(a[1])),
        "loguniform": lambda a: tune.loguniform(float(a[0]), float(a[1])),
        "randint": lambda a: tune.randint(int(a[0]), int(a[1])),
        "choice": tune.choice,
        "grid": tune.grid_search,
    }
    return {
        key: makers[kind](args) for key, spec in space.space.items() for kind, args in spec.items()
    }


def _probe_values(space: SearchSpace) -> dict[str, Any]:
    """One value per key (low end / first choice), to validate keys before any trial runs."""
    out = {}
    for key, spec in space.space.items():
        kind, args = next(iter(spec.items()))
        out[key] = args[0]
    return out


def run_trial(config: dict[str, Any], *, static: dict[str, Any]) -> None:
    """One Tune trial: sampled overrides -> experiment -> MLflow child run -> TorchTrainer."""
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from gfssm.pipelines.train import build_trainer, finalize, fit_or_fail, start_run

    trial_id = ray.tune.get_context().get_trial_id()
    task = get_task(static["task"])
    sampled = {k: config[k] for k in static["keys"]}
    experiment = build_experiment(
        static["raw"], task, {**static["overrides"], **sampled}, source=f"trial {trial_id}"
    )
    # Trials keep curves and their best checkpoint; the pyfunc (and any registration) is for
    # the run that trains the best experiment afterwards.
    experiment = experiment.model_copy(
        update={
            "tracking": experiment.tracking.model_copy(
                update={"log_model": False, "register_as": None}
            )
        }
    )
    client = tracking_client(static["tracking_uri"], check=False)
    run_name = f"{static['name']}-{trial_id}"
    run_id = start_run(
        client,
        experiment,
        task,
        run_name=run_name,
        storage_path=static["storage"],
        kind="trial",
        parent_run_id=static["parent_run_id"],
    )
    set_tags(client, run_id, {f"{TAG_PREFIX}trial_id": trial_id})
    trainer = build_trainer(
        experiment,
        run_id=run_id,
        tracking_uri=static["tracking_uri"],
        ray_name=f"{static['name']}--{trial_id}",
        storage_path=static["storage"],
        callbacks=[TuneReportCallback()],
    )
    result = fit_or_fail(trainer, client, run_id, experiment)
    finalize(
        client,
        experiment,
        result,
        run_id=run_id,
        run_name=run_name,
        tracking_uri=static["tracking_uri"],
    )


@dataclass
class TuneOutcome:
    parent_run_id: str
    best_run_id: str | None
    best_metric: float | None
    best_overrides: dict[str, Any]
    best_experiment_file: Path
    trials: list[dict[str, Any]]


def run_tune(
    task_name: str,
    *,
    space_raw: dict[str, Any],
    space_source: str,
    overrides: list[str],
    tracking_uri: str | None = None,
    ray_address: str | None = None,
    out: Path | None = None,
    base_dir: Path | None = None,
    log=print,
) -> TuneOutcome:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator

    from gfssm.pipelines.bundled import load_experiment_file
    from gfssm.pipelines.config import prepare_experiment
    from gfssm.pipelines.ray_session import connect, fit_to_cluster
    from gfssm.pipelines.train import mlflow_experiment_name, storage_root

    task = get_task(task_name)
    tune_values, exp_overrides = split_overrides(overrides)
    space = load_space(space_raw, tune_values, space_source)
    raw, source = load_experiment_file(task_name, space.experiment, base_dir)
    base = build_experiment(raw, task, exp_overrides, source=source)
    build_experiment(raw, task, {**exp_overrides, **_probe_values(space)}, source=space_source)
    base = prepare_experiment(base, task, base_dir or Path.cwd())
    metric = space.metric or base.train.select_metric
    mode = space.mode or base.train.select_mode

    client = tracking_client(tracking_uri)
    uri = resolve_tracking_uri(tracking_uri)
    name = f"tune-{task.name}-{base.name}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    tags = run_tags(task=task.name, preset=base.name, model_preset=base.preset, kind="tune")
    connect(ray_address)
    if not (ray_address or os.environ.get("RAY_ADDRESS")):
        base = fit_to_cluster(
            base, log, extra_cpus=space.trial_cpus, share=space.max_concurrent_trials
        )
    parent = create_run(client, experiment=mlflow_experiment_name(base), run_name=name, tags=tags)
    client.log_text(parent, space_raw.__repr__(), "config/search_space.txt")
    client.log_text(parent, base.to_yaml(), "config/base_experiment.yaml")
    storage = storage_root(base)
    log(
        f"MLflow parent run {parent} ({name}); {space.num_samples} trials, "
        f"at most {space.max_concurrent_trials} at a time"
    )

    static = {
        "task": task.name,
        # paths resolved and resources fitted in the driver: trials run in other folders
        "raw": base.model_dump(mode="json"),
        "overrides": {},
        "keys": list(space.space),
        "tracking_uri": uri,
        "parent_run_id": parent,
        "storage": storage,
        "name": name,
    }
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, static=static), {"CPU": space.trial_cpus}
    )
    tuner = tune.Tuner(
        trainable,
        param_space=param_space(space),
        tune_config=tune.TuneConfig(
            metric=metric,
            mode=mode,
            num_samples=space.num_samples,
            # The generator caps concurrency itself (Tune ignores max_concurrent_trials with
            # a generator, and then starts trials whose worker groups can never fit).
            search_alg=BasicVariantGenerator(
                random_state=space.seed, max_concurrent=space.max_concurrent_trials
            ),
            scheduler=ASHAScheduler(
                time_attr="step",
                # Beyond the last step: a trial that runs to the end is never "stopped" by
                # ASHA, so its own code finishes (artifacts, FINISHED status).
                max_t=base.train.steps + 1,
                grace_period=min(space.grace_period, base.train.steps),
                reduction_factor=space.reduction_factor,
            ),
        ),
        # verbose=0: no status table every few seconds; trials print their own progress.
        run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0),
    )
    # Ctrl-C must reach us: Tune would swallow it, print its own resume advice and let
    # the search be summarised as if it had finished.
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    try:
        grid = tuner.fit()
    except KeyboardInterrupt:
        finish_run(client, parent, "KILLED")
        raise
    return _summarise(
        client,
        grid,
        base,
        task,
        raw,
        exp_overrides,
        space,
        metric,
        mode,
        parent=parent,
        name=name,
        out=out,
        log=log,
    )


def _summarise(
    client, grid, base, task, raw, exp_overrides, space, metric, mode, *, parent, name, out, log
) -> TuneOutcome:
    by_trial = {
        r.data.tags.get(f"{TAG_PREFIX}trial_id"): r
        for r in child_runs(client, parent, [client.get_run(parent).info.experiment_id])
    }
    trials = []
    for result in grid:
        trial_id = next((t for t in by_trial if t and t in (result.path or "")), None)
        run = by_trial.get(trial_id)
        values = {k: result.config.get(k) for k in space.space}
        final = (result.metrics or {}).get(metric)
        steps = (result.metrics or {}).get("step")
        trials.append(
            {
                "trial": trial_id,
                "run_id": run.info.run_id if run else None,
                "metric": final,
                "step": steps,
                "error": bool(result.error),
                **values,
            }
        )
    for run in by_trial.values():
        if run.info.status == "RUNNING":  # ASHA stopped it before its own code could finish
            set_tags(client, run.info.run_id, {f"{TAG_PREFIX}stopped_early": "asha"})
            finish_run(client, run.info.run_id, "KILLED")
    best_overrides: dict[str, Any] = {}
    best_metric = best_run = None
    scored = [t for t in trials if t["metric"] is not None and not t["error"]]
    if scored:
        best = (min if mode == "min" else max)(scored, key=lambda t: t["metric"])
        best_overrides = {k: best[k] for k in space.space}
        best_metric, best_run = best["metric"], best["run_id"]
    tuned = build_experiment(raw, task, {**exp_overrides, **best_overrides}, source="best trial")
    tuned = tuned.model_copy(
        update={
            "name": f"{base.name}-tuned",
            "description": f"best of {name} ({metric}={best_metric})",
        }
    )
    path = out or Path(f"{task.name}-{base.name}-tuned.yaml")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tuned.to_yaml())
    client.log_text(parent, tuned.to_yaml(), "best_experiment.yaml")
    if best_metric is not None:
        log_metrics(client, parent, {f"best_{metric}": best_metric}, step=0)
        set_tags(client, parent, {f"{TAG_PREFIX}best_run_id": best_run or ""})
    finish_run(client, parent, "FINISHED" if scored else "FAILED")
    log(f"best {metric}: {best_metric} with {best_overrides}; written to {path}")
    return TuneOutcome(parent, best_run, best_metric, best_overrides, path, trials)
