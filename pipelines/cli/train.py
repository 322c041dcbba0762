"""``gfssm train TASK``: train on Ray Train (or in this process with ``--local``)."""

from __future__ import annotations

import argparse
import inspect

from gfssm.pipelines.cli.common import add_ray, add_tracking, base_dir, load_task, say


def add(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a task on Ray Train, tracked in MLflow",
        description="Train TASK with an experiment file and key=value overrides "
        "(e.g. train.steps=200 model.d_model=64 task.window_length=2048). Paths are "
        "taken from the folder you run the command in.",
    )
    p.add_argument("task", help="task plugin name (e.g. dna, asr)")
    p.add_argument("--config", help="experiment YAML file or bundled name (default: quickstart)")
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        metavar="RUN",
        help="resume the latest run of this experiment, or RUN (id or name)",
    )
    p.add_argument(
        "--local",
        action="store_true",
        help="run the training loop in this process (no Ray; one worker)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="check the inputs, print the experiment, exit"
    )
    p.add_argument("overrides", nargs="*", metavar="key=value")
    add_tracking(p)
    add_ray(p)
    p.set_defaults(handler=run)


def load_experiment(task_name: str, config: str | None, overrides: list[str]):
    """(task, validated experiment, parsed overrides) for the command line."""
    from gfssm.pipelines.bundled import load_experiment_file
    from gfssm.pipelines.config import build_experiment, parse_overrides

    task = load_task(task_name)
    parsed = parse_overrides(overrides)
    raw, source = load_experiment_file(task_name, config, base_dir())
    return task, build_experiment(raw, task, parsed, source=source), parsed


def browse_hint(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    # MLflow 3's UI opens in its GenAI views unless the link asks for model training.
    page = f"#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"
    if tracking_uri.startswith("sqlite:"):
        return (
            f"mlflow ui --backend-store-uri {tracking_uri} --host 127.0.0.1 --port 5000, "
            f"then open http://127.0.0.1:5000/{page}"
        )
    return f"open {tracking_uri.rstrip('/')}/{page}"


def usage_hint(task, run_id: str, settings) -> str | None:
    """The task's "use it" line; tasks may take the run's settings or the run id alone."""
    if "settings" in inspect.signature(task.usage_hint).parameters:
        return task.usage_hint(run_id, settings=settings)
    return task.usage_hint(run_id)


def run(args: argparse.Namespace) -> int:
    from gfssm.pipelines.config import prepare_experiment

    task, experiment, parsed = load_experiment(args.task, args.config, args.overrides)
    if args.dry_run:
        print(prepare_experiment(experiment, task, base_dir()).to_yaml().rstrip())
        return 0
    from gfssm.pipelines.train import run_training
    from gfssm.pipelines.train_loop import headline as is_headline

    result = run_training(
        experiment,
        tracking_uri=args.tracking_uri,
        ray_address=args.address,
        resume=args.resume,
        resume_overrides=parsed,
        local=args.local,
        base_dir=base_dir(),
        log=say,
    )
    shown = ", ".join(
        f"{k} {v:.4g}"
        for k, v in sorted(result.metrics.items())
        if k.startswith("eval_") and isinstance(v, float) and is_headline(k)
    )
    say(f"\nrun {result.run_id} ({result.run_name}) finished: {shown or 'no evaluation'}")
    say(f"  best checkpoint: {result.best_checkpoint}")
    if result.registered:
        say(f"  registered model: {result.registered}")
    say(f"  browse: {browse_hint(result.tracking_uri, result.experiment_id, result.run_id)}")
    say(f"  details: gfssm runs show {result.run_id}")
    hint = usage_hint(task, result.run_id, result.settings)
    if hint:
        say(f"  use it: {hint}")
    return 0
