"""``gfssm study SPEC``: contenders x learning rates x seeds x lengths on Ray Tune, with a
summary table and plots (see :mod:`gfssm.pipelines.study`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from gfssm.pipelines.cli.common import add_ray, add_tracking, base_dir, load_task, say


def add(sub) -> None:
    p = sub.add_parser(
        "study",
        help="compare GFSSM, Mamba-2, ablations and a Transformer (Ray Tune + MLflow)",
        description="Run a study: every contender x learning rate x seed x length, each a "
        "training run in MLflow under one parent run, then a summary (markdown, CSV, plots). "
        "study.KEY=V overrides the study file (study.seeds=[0,1]); other keys the base "
        "experiment (train.steps=200). Running the same command again resumes the study.",
        epilog="bundled studies: gfssm configs lists them (ray_configs/studies/)",
    )
    p.add_argument("spec", help="study YAML or the name of a bundled study (e.g. mqar-cpu)")
    p.add_argument("--out", help="summary folder (default: ./study-NAME)")
    p.add_argument("--restart", action="store_true", help="start over instead of resuming")
    p.add_argument("--dry-run", action="store_true", help="check the grid and list the trials")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    add_tracking(p)
    add_ray(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from gfssm.pipelines.bundled import load_study_file
    from gfssm.pipelines.config import parse_overrides, parse_value
    from gfssm.pipelines.errors import ExperimentError
    from gfssm.pipelines.study_spec import expand, load_spec

    raw, source = load_study_file(args.spec, base_dir())
    study_items = [o[len("study.") :] for o in args.overrides if o.startswith("study.")]
    study_overrides = {}
    for item in study_items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ExperimentError(f"override study.{item!r}: expected study.KEY=VALUE")
        study_overrides[key] = parse_value(value)
    experiment_overrides = parse_overrides(
        [o for o in args.overrides if not o.startswith("study.")]
    )
    spec = load_spec(raw, source, study_overrides)
    task_name = (spec.experiment or {}).get("task_name")
    if not task_name:
        raise ExperimentError(f"{source}: experiment.task_name is missing")
    task = load_task(task_name)
    if args.dry_run:
        from gfssm.pipelines.config import apply_overrides

        spec = spec.model_copy(
            update={"experiment": apply_overrides(spec.experiment, experiment_overrides)}
        )
        trials = expand(spec, task, source)
        for trial in trials:
            say(f"{trial.key}\t{trial.parameters:,} parameters")
        say(f"{len(trials)} trials of study {spec.name} ({task.name} task); nothing was run")
        return 0
    from gfssm.pipelines.study import run_study

    outcome = run_study(
        raw,
        source,
        spec=spec,
        task=task,
        experiment_overrides=experiment_overrides,
        tracking_uri=args.tracking_uri,
        ray_address=args.address,
        out=Path(args.out).expanduser().resolve() if args.out else None,
        base_dir=base_dir(),
        restart=args.restart,
        log=say,
    )
    if outcome.failed:
        say(f"{len(outcome.failed)} trial(s) failed: {', '.join(outcome.failed)}")
        return 1
    return 0
