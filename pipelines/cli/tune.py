"""``gfssm tune TASK``: Ray Tune with ASHA over a search space, one MLflow parent run."""

from __future__ import annotations

import argparse
from pathlib import Path

from gfssm.pipelines.cli.common import add_ray, add_tracking, base_dir, load_task, say


def add(sub) -> None:
    p = sub.add_parser(
        "tune",
        help="search hyperparameters with Ray Tune (ASHA)",
        description="Tune TASK over a search space; tune.KEY=V overrides the "
        "space file (tune.num_samples=4), other keys the base experiment.",
    )
    p.add_argument("task")
    p.add_argument("--space", help="search-space YAML or bundled name (default: the task's)")
    p.add_argument(
        "--out", help="where to write the best experiment YAML (default: ./TASK-NAME-tuned.yaml)"
    )
    p.add_argument("overrides", nargs="*", metavar="key=value")
    add_tracking(p)
    add_ray(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from gfssm.pipelines.bundled import load_space_file
    from gfssm.pipelines.runs import console
    from gfssm.pipelines.tune import run_tune

    load_task(args.task)
    raw, source = load_space_file(args.task, args.space, base_dir())
    outcome = run_tune(
        args.task,
        space_raw=raw,
        space_source=source,
        overrides=list(args.overrides),
        tracking_uri=args.tracking_uri,
        ray_address=args.address,
        out=Path(args.out).expanduser() if args.out else None,
        base_dir=base_dir(),
        log=say,
    )
    table = Table(title=f"trials of parent run {outcome.parent_run_id}")
    keys = list(outcome.best_overrides) or sorted(
        {k for t in outcome.trials for k in t} - {"trial", "run_id", "metric", "step", "error"}
    )
    for column in ("trial", "run id", "step", "metric", *keys):
        table.add_column(column)
    for t in outcome.trials:
        table.add_row(
            str(t["trial"]),
            str(t["run_id"]),
            str(t["step"]),
            "error" if t["error"] else f"{t['metric']:.4g}" if t["metric"] is not None else "",
            *(str(t.get(k)) for k in keys),
        )
    console().print(table)
    say(f"train the best: gfssm train {args.task} --config {outcome.best_experiment_file}")
    return 0
