"""``gfssm study``: run a study's grid on Ray Tune, one MLflow child run per trial.

Each trial is one process (a Tune function trial with ``trial_cpus`` CPUs and ``trial_gpus``
GPUs) running the one training loop in place (:func:`~gfssm.pipelines.train_loop.run_loop`
with a local context), so small models fill a machine with many trials at once. The study
has one MLflow parent run; its trials are children tagged with their grid cell.

Resuming: the same command again finds the study's parent run (by the study's name and a
fingerprint of every trial's resolved experiment, so a changed study starts afresh), keeps
every FINISHED trial, reopens the others' runs and continues them from their last
checkpoint. ``restart=True`` starts a new study run instead.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gfssm.pipelines.config import Experiment, apply_overrides, prepare_experiment
from gfssm.pipelines.study_spec import MLFLOW_EXPERIMENT, StudySpec, Trial, expand
from gfssm.pipelines.tracking import (
    ABORT_TAG,
    TAG_PREFIX,
    child_runs,
    create_run,
    driver_tags,
    finish_run,
    mark_orphaned_runs,
    resolve_tracking_uri,
    run_tags,
    set_tags,
    tracking_client,
)
from gfssm.pipelines.train_context import LocalContext

STUDY_TAG = f"{TAG_PREFIX}study"
FINGERPRINT_TAG = f"{TAG_PREFIX}study_fingerprint"
TRIAL_TAG = f"{TAG_PREFIX}study_trial"
CELL_TAGS = ("contender", "lr", "seed", "length", "parameters")


@dataclass
class StudyOutcome:
    parent_run_id: str
    trials: int
    ran: int
    failed: list[str]
    out: Path


class _TuneReportingContext(LocalContext):
    """The local context, also reporting every evaluation to Tune."""

    def report(self, metrics: dict[str, Any], folder: Path | None) -> None:
        super().report(metrics, folder)
        import ray.tune

        ray.tune.report({k: v for k, v in metrics.items() if isinstance(v, int | float)})


def run_study_trial(config: dict[str, Any], *, static: dict[str, Any]) -> None:
    """One Tune trial: its experiment, its MLflow child run, the loop in this process."""
    import torch

    from gfssm.pipelines.train import start_run
    from gfssm.pipelines.train_loop import ABORT_KEY, run_loop
    from gfssm.tasks.base import get_task

    key = config["trial"]
    cell = static["trials"][key]
    torch.set_num_threads(max(1, int(static["cpus"])))
    experiment = Experiment.model_validate(cell["experiment"])
    task = get_task(experiment.task_name)
    client = tracking_client(static["tracking_uri"], check=False)
    run_dir = Path(static["storage"]) / key
    run_id = static["reopen"].get(key)
    if run_id:
        client.update_run(run_id, status="RUNNING")
    else:
        run_id = start_run(
            client,
            experiment,
            task,
            run_name=f"{static['name']}-{key}",
            storage_path=str(run_dir),
            kind="study-trial",
            parent_run_id=static["parent"],
        )
    tags = {TRIAL_TAG: key, STUDY_TAG: static["name"], **driver_tags()}
    tags.update({f"{TAG_PREFIX}{k}": str(cell[k]) for k in CELL_TAGS})
    set_tags(client, run_id, tags)
    train = experiment.train
    ctx = _TuneReportingContext(
        run_dir,
        keep=1,
        metric=train.select_metric,
        mode=train.select_mode,
        use_gpu=static["gpus"] > 0,
    )
    loop_config = {
        "experiment": experiment.model_dump(mode="json"),
        "run_id": run_id,
        "tracking_uri": static["tracking_uri"],
    }
    # A trial's step lines go to its own log (and MLflow), not to the study's terminal.
    log_path = run_dir / "trial.log"
    try:
        with log_path.open("a") as log, contextlib.redirect_stdout(log):
            run_loop(loop_config, ctx)
    except Exception as err:
        set_tags(client, run_id, {ABORT_TAG: f"{type(err).__name__}: {err}"[:5000]})
        finish_run(client, run_id, "FAILED")
        raise
    reason = ctx.result().metrics.get(ABORT_KEY)
    if reason:
        set_tags(client, run_id, {ABORT_TAG: str(reason)})
        finish_run(client, run_id, "FAILED")
        raise RuntimeError(str(reason))
    finish_run(client, run_id, "FINISHED")


def _progress_callbacks(total: int, done: int, metric: str, log) -> list:
    from ray import tune
    from ray.tune.progress_reporter import TrialProgressCallback

    class Silent(TrialProgressCallback):
        """Stands in for Tune's per-result printer (Tune adds its own only when none of
        this type is given); the study prints one line per finished trial instead."""

        def on_trial_result(self, *args, **kwargs) -> None:
            pass

        def on_trial_complete(self, *args, **kwargs) -> None:
            pass

        def on_trial_error(self, *args, **kwargs) -> None:
            pass

    class Progress(tune.Callback):
        def __init__(self) -> None:
            self.count = done

        def _line(self, trial, what: str) -> None:
            self.count += 1
            log(f"[{self.count}/{total}] {trial.config.get('trial')}: {what}")

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            result = trial.last_result or {}
            what = (
                f"diverged at step {int(result['diverged_step'])}"
                if result.get("diverged")
                else "finished"
            )
            shown = [f"{metric} {result[metric]:.4g}"] if metric in result else []
            if "tokens_per_s" in result:
                shown.append(f"{result['tokens_per_s']:,.0f} tokens/s")
            self._line(trial, ", ".join([what, *shown]))

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            self._line(trial, "FAILED (see its MLflow run)")

    return [Silent(), Progress()]


def fingerprint(experiments: dict[str, Experiment]) -> str:
    """What decides a study's results: every trial's resolved experiment. A study file or
    override that changes them starts a new study run instead of resuming an old one."""
    text = json.dumps(
        {k: e.model_dump(mode="json") for k, e in sorted(experiments.items())}, sort_keys=True
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def find_parent(client, spec: StudySpec, print_: str):
    """The latest MLflow run of this study with this fingerprint, or None."""
    exp = client.get_experiment_by_name(MLFLOW_EXPERIMENT)
    if exp is None:
        return None
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`{STUDY_TAG}` = '{spec.name}' and tags.`{TAG_PREFIX}kind` = 'study'"
        f" and tags.`{FINGERPRINT_TAG}` = '{print_}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def _prepared(trials: list[Trial], task, base_dir: Path) -> dict[str, Experiment]:
    """Every trial's experiment with its paths resolved and inputs checked (each distinct
    task section once: the grid repeats it)."""
    prepared: dict[str, Experiment] = {}
    out = {}
    for trial in trials:
        key = repr(sorted(trial.experiment.task.items()))
        if key not in prepared:
            prepared[key] = prepare_experiment(trial.experiment, task, base_dir)
        done = prepared[key]
        out[trial.key] = trial.experiment.model_copy(
            update={
                "task": done.task,
                "train": trial.experiment.train.model_copy(
                    update={"storage_path": done.train.storage_path}
                ),
            }
        )
    return out


def run_study(
    raw: dict[str, Any],
    source: str,
    *,
    spec: StudySpec,
    task,
    experiment_overrides: dict[str, Any],
    tracking_uri: str | None = None,
    ray_address: str | None = None,
    out: Path | None = None,
    base_dir: Path | None = None,
    restart: bool = False,
    log=print,
) -> StudyOutcome:
    from ray import tune

    from gfssm.pipelines.ray_session import connect
    from gfssm.pipelines.study_report import write_report

    base_dir = base_dir or Path.cwd()
    spec = spec.model_copy(
        update={"experiment": apply_overrides(spec.experiment, experiment_overrides)}
    )
    trials = expand(spec, task, source)
    experiments = _prepared(trials, task, base_dir)
    out = out or base_dir / f"study-{spec.name}"
    client = tracking_client(tracking_uri)
    uri = resolve_tracking_uri(tracking_uri)
    mark_orphaned_runs(client)
    print_ = fingerprint(experiments)
    previous = None if restart else find_parent(client, spec, print_)
    done: set[str] = set()
    reopen: dict[str, str] = {}
    if previous is not None:
        parent = previous.info.run_id
        client.update_run(parent, status="RUNNING")
        set_tags(client, parent, driver_tags())
        for run in child_runs(client, parent, [previous.info.experiment_id]):
            key = run.data.tags.get(TRIAL_TAG)
            if run.info.status == "FINISHED":
                done.add(key)
            elif key:
                reopen[key] = run.info.run_id
        log(f"resuming study {spec.name} (MLflow run {parent}): {len(done)} trial(s) done")
    else:
        tags = run_tags(task=task.name, preset=spec.name, model_preset="study", kind="study")
        tags.update({STUDY_TAG: spec.name, FINGERPRINT_TAG: print_, **driver_tags()})
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        parent = create_run(
            client, experiment=MLFLOW_EXPERIMENT, run_name=f"study-{spec.name}-{stamp}", tags=tags
        )
        client.log_text(parent, repr(raw), "study/spec.txt")
        log(f"study {spec.name}: {len(trials)} trials, MLflow run {parent}")
    counts = {t.contender: t.parameters for t in trials}
    log("parameters: " + ", ".join(f"{name} {n:,}" for name, n in counts.items()))
    todo = [t for t in trials if t.key not in done]
    # Per study run: a restarted study never continues the checkpoints of an older one.
    root = Path(experiments[trials[0].key].train.storage_path)
    storage = str(root / f"study-{spec.name}" / parent[:8])
    failed: list[str] = []
    if todo:
        connect(ray_address)
        static = {
            "trials": {
                t.key: {
                    "experiment": experiments[t.key].model_dump(mode="json"),
                    "contender": t.contender,
                    "lr": t.lr,
                    "seed": t.seed,
                    "length": t.length,
                    "parameters": t.parameters,
                }
                for t in todo
            },
            "reopen": {k: v for k, v in reopen.items() if k in {t.key for t in todo}},
            "tracking_uri": uri,
            "parent": parent,
            "name": spec.name,
            "storage": storage,
            "cpus": spec.trial_cpus,
            "gpus": spec.trial_gpus,
        }
        resources = {"CPU": spec.trial_cpus, "GPU": spec.trial_gpus}
        trainable = tune.with_resources(
            tune.with_parameters(run_study_trial, static=static), resources
        )
        tuner = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search([t.key for t in todo])},
            run_config=tune.RunConfig(
                name=f"study-{spec.name}-{os.getpid()}",
                storage_path=storage,
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=0),
                callbacks=_progress_callbacks(len(trials), len(done), spec.metric, log),
            ),
        )
        # Ctrl-C must reach us (Tune would swallow it and print its own resume advice):
        # running trials' runs are marked KILLED and the same command resumes them.
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        try:
            grid = tuner.fit()
        except KeyboardInterrupt:
            _stop_children(client, parent, previous)
            finish_run(client, parent, "KILLED")
            raise
        failed = [r.config.get("trial") for r in grid if r.error]
    paths = write_report(client, parent, spec, trials, out)
    finish_run(client, parent, "FINISHED" if not failed else "FAILED")
    log(f"summary: {paths['markdown']} (plots and CSV beside it; MLflow run {parent})")
    return StudyOutcome(parent, len(trials), len(todo), failed, out)


def _stop_children(client, parent: str, previous) -> None:
    experiment_id = client.get_run(parent).info.experiment_id
    for run in child_runs(client, parent, [experiment_id]):
        if run.info.status == "RUNNING":
            finish_run(client, run.info.run_id, "KILLED")
