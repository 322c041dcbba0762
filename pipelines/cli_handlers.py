"""What each ``gfssm`` subcommand does; heavy modules are imported inside the handlers."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gfssm.pipelines.errors import GFSSMUserError

USER_ERRORS: tuple[type[BaseException], ...] = (GFSSMUserError,)


class UnknownTask(GFSSMUserError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def load_task(name: str):
    from gfssm.tasks.base import get_task

    try:
        return get_task(name)
    except KeyError as err:
        raise UnknownTask(err.args[0]) from None


def load_experiment(task_name: str, config: str | None, overrides: list[str]):
    """(task, validated experiment, parsed overrides) for the command line."""
    from gfssm.pipelines.bundled import load_experiment_file
    from gfssm.pipelines.config import build_experiment, parse_overrides

    task = load_task(task_name)
    parsed = parse_overrides(overrides)
    raw, source = load_experiment_file(task_name, config)
    return task, build_experiment(raw, task, parsed, source=source), parsed


def _say(text: str) -> None:
    print(text, flush=True)


def _browse_hint(tracking_uri: str) -> str:
    if tracking_uri.startswith("sqlite:"):
        return (
            f"mlflow ui --backend-store-uri {tracking_uri} --host 127.0.0.1 --port 5000"
            f"   (then open http://127.0.0.1:5000)"
        )
    return f"open {tracking_uri} in a browser"


# train / tune ---------------------------------------------------------------------------
def train(args: argparse.Namespace) -> int:
    task, experiment, parsed = load_experiment(args.task, args.config, args.overrides)
    if args.dry_run:
        print(experiment.to_yaml().rstrip())
        return 0
    from gfssm.pipelines.train import run_training

    result = run_training(
        experiment,
        tracking_uri=args.tracking_uri,
        ray_address=args.address,
        resume=args.resume,
        resume_overrides=parsed,
        log=_say,
    )
    from gfssm.pipelines.train_loop import headline as is_headline

    headline = ", ".join(
        f"{k} {v:.4g}"
        for k, v in sorted(result.metrics.items())
        if k.startswith("eval_") and isinstance(v, float) and is_headline(k)
    )
    _say(f"\nrun {result.run_id} ({result.run_name}) finished: {headline or 'no evaluation'}")
    _say(f"  best checkpoint: {result.best_checkpoint}")
    if result.registered:
        _say(f"  registered model: {result.registered}")
    _say(f"  browse: {_browse_hint(result.tracking_uri)}")
    _say(f"  details: gfssm runs show {result.run_id}")
    from gfssm.pipelines.tasks_wiring import usage_hint

    hint = usage_hint(task.name, result.run_id)
    if hint:
        _say(f"  use it: {hint}")
    return 0


def tune(args: argparse.Namespace) -> int:
    from gfssm.pipelines.bundled import load_space_file
    from gfssm.pipelines.tune import run_tune

    load_task(args.task)
    raw, source = load_space_file(args.task, args.space)
    outcome = run_tune(
        args.task,
        space_raw=raw,
        space_source=source,
        overrides=list(args.overrides),
        tracking_uri=args.tracking_uri,
        ray_address=args.address,
        out=Path(args.out) if args.out else None,
        log=_say,
    )
    from rich.table import Table

    from gfssm.pipelines.runs import console

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
    _say(f"train the best: gfssm train {args.task} --config {outcome.best_experiment_file}")
    return 0


# score / transcribe / eval --------------------------------------------------------------
def score_genome(args: argparse.Namespace) -> int:
    from gfssm.pipelines.tasks_wiring import score_genome_command

    return score_genome_command(args, log=_say)


def score_variants(args: argparse.Namespace) -> int:
    from gfssm.pipelines.tasks_wiring import score_variants_command

    return score_variants_command(args, log=_say)


def transcribe(args: argparse.Namespace) -> int:
    from gfssm.pipelines.tasks_wiring import transcribe_command

    return transcribe_command(args, log=_say)


def eval_asr(args: argparse.Namespace) -> int:
    from gfssm.pipelines.tasks_wiring import eval_asr_command

    return eval_asr_command(args, log=_say)


def add_score_options(genome, variants) -> None:
    from gfssm.pipelines.tasks_wiring import add_score_options as add

    add(genome, variants)


def add_speech_options(transcribe, evaluate) -> None:
    from gfssm.pipelines.tasks_wiring import add_speech_options as add

    add(transcribe, evaluate)


def synth(argv: list[str]) -> int:
    """``gfssm data synth ...``: the speech task's corpus builder, errors as one line."""
    try:
        from gfssm.tasks.asr.synth import main as build
    except ImportError:
        print("gfssm data synth: error: the asr task is not installed", file=sys.stderr)
        return 2
    try:
        return int(build(argv) or 0)
    except (ValueError, OSError, RuntimeError) as err:
        print(f"gfssm data synth: error: {err}", file=sys.stderr)
        return 2


def add_data_commands(parser: argparse.ArgumentParser) -> None:
    from gfssm.pipelines.tasks_wiring import add_data_commands as add

    add(parser)


# submit / jobs --------------------------------------------------------------------------
def submit(args: argparse.Namespace) -> int:
    from gfssm.pipelines import submit as jobs

    env = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise jobs.SubmitError(f"--env {item!r}: expected KEY=VALUE")
        env[key] = value
    submission_id, address = jobs.submit(
        args.command,
        address=args.address,
        wheel=Path(args.wheel) if args.wheel else None,
        env=env,
        tracking_uri=args.tracking_uri,
        log=_say,
    )
    if args.no_wait:
        _say(f"follow: gfssm jobs logs {submission_id} --follow --address {address}")
        return 0
    try:
        status = jobs.follow(submission_id, address=address)
    except KeyboardInterrupt:
        _say(
            f"\nstopped following; the job keeps running. Stop it: gfssm jobs stop "
            f"{submission_id} --address {address}"
        )
        return 130
    _say(f"job {submission_id}: {status}")
    return 0 if status == "SUCCEEDED" else 1


def jobs(args: argparse.Namespace) -> int:
    from gfssm.pipelines import submit as jobs_api

    if args.action == "list":
        from rich.table import Table

        from gfssm.pipelines.runs import console

        table = Table(title="Ray jobs")
        for column in ("submission id", "status", "entrypoint", "message"):
            table.add_column(column, no_wrap=column == "submission id", overflow="fold")
        for job in jobs_api.list_jobs(args.address):
            table.add_row(
                str(job.submission_id),
                str(job.status.value),
                str(job.entrypoint),
                str(job.message or ""),
            )
        console().print(table)
    elif args.action == "logs":
        if args.follow:
            status = jobs_api.follow(args.job, address=args.address)
            _say(f"job {args.job}: {status}")
        else:
            sys.stdout.write(jobs_api.job_logs(args.job, args.address))
    else:
        stopped = jobs_api.stop_job(args.job, args.address)
        _say(f"job {args.job}: {'stop requested' if stopped else 'already finished'}")
    return 0


# runs / configs -------------------------------------------------------------------------
def runs(args: argparse.Namespace) -> int:
    from gfssm.pipelines import runs as runs_api
    from gfssm.pipelines.tracking import tracking_client

    client = tracking_client(args.tracking_uri)
    out = runs_api.console()
    if args.action == "list":
        found = runs_api.list_runs(
            client, experiment=args.experiment, task=args.task, limit=args.limit
        )
        out.print(runs_api.runs_table(client, found))
    elif args.action == "show":
        runs_api.show_run(client, runs_api.find_run(client, args.run), out)
    else:
        out.print(runs_api.compare_runs([runs_api.find_run(client, r) for r in args.runs]))
    return 0


def configs(args: argparse.Namespace) -> int:
    from gfssm.pipelines.bundled import bundled_experiments, bundled_spaces
    from gfssm.tasks.base import available_tasks

    names = [args.task] if args.task else sorted(available_tasks())
    for name in names:
        _say(f"{name}: experiments {', '.join(bundled_experiments(name)) or 'none'}")
    _say(f"search spaces: {', '.join(bundled_spaces()) or 'none'}")
    return 0
