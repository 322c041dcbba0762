"""How a task's command runs: a batch job over a trained model, or a local data step.

Shared by ``gfssm score``, ``transcribe``, ``eval`` and ``data``: each of those modules only
lists the installed tasks' commands under its own name.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from gfssm.pipelines.cli.common import add_batch_job_options, base_dir, say
from gfssm.pipelines.errors import ModelNotFound


@contextmanager
def local_model(ref: str, tracking_uri: str | None):
    """A model directory for ``--model`` (downloads live as long as the command)."""
    from gfssm.pipelines.model_ref import resolve_model

    with tempfile.TemporaryDirectory(prefix="gfssm-model-") as tmp:
        yield resolve_model(ref, tracking_uri=tracking_uri, cache=Path(tmp), base_dir=base_dir())


def attach(parser: argparse.ArgumentParser, task, spec) -> None:
    """Give ``parser`` the command's options and its handler."""
    spec.add_arguments(parser)
    if spec.make_job is not None:
        add_batch_job_options(parser)
        parser.set_defaults(handler=lambda args: run_batch_job(args, task, spec))
    else:
        parser.set_defaults(handler=lambda args: spec.run(args, base_dir(), say))


def add_standalone(sub, command: str) -> None:
    """``gfssm COMMAND ...`` for the one task command that stands alone under that name
    (``transcribe``, ``embed``); nothing when no installed task offers it."""
    from gfssm.pipelines.cli.common import task_commands

    found = [(t, c) for t, c in task_commands(command) if c.name is None]
    if not found:
        return
    task, spec = found[0]
    p = sub.add_parser(command, help=spec.help, description=spec.description or spec.help)
    attach(p, task, spec)


def run_batch_job(args: argparse.Namespace, task, spec) -> int:
    from gfssm.pipelines.batch import PoolSpec, run_job
    from gfssm.tasks.pretrained import load_model

    pool = PoolSpec(args.actors, args.cpus_per_actor, args.gpus_per_actor)  # checked here
    with local_model(args.model, args.tracking_uri) as model_dir:
        loaded = load_model(model_dir)
        if loaded.task.name != task.name:
            raise ModelNotFound(
                f"--model {args.model}: a {loaded.task.name!r} model; this command needs a "
                f"{task.name!r} model"
            )
        job = spec.make_job(args, base_dir(), loaded)
        del loaded  # actors load their own copy

        def connect() -> None:
            from gfssm.pipelines.ray_session import connect as ray_connect

            dashboard = ray_connect(args.address)
            if dashboard:
                say(f"Ray dashboard: {dashboard}")

        code = run_job(job, model_dir, pool=pool, connect=connect, log=say)
    metrics = job.metrics()
    if code == 0 and metrics:
        _record(args, f"{spec.command} {spec.name or ''}".strip(), metrics)
    return code


def _record(args: argparse.Namespace, command: str, metrics: dict[str, float]) -> None:
    """The evaluation's numbers as a child of the model's MLflow run, when ``--model`` came
    from one (not a folder); one line on stderr, whether it was recorded or not (stdout's
    last line may be a JSON summary)."""
    if (base_dir() / Path(args.model).expanduser()).exists():
        return  # a model folder: no run to attach the numbers to
    from gfssm.pipelines.evaluation_runs import record_evaluation
    from gfssm.pipelines.model_ref import model_run_id
    from gfssm.pipelines.tracking import tracking_client

    try:
        client = tracking_client(args.tracking_uri)
        model_run = model_run_id(client, args.model)
        if model_run is None:
            return
        run_id = record_evaluation(client, model_run, command, args, metrics)
    except Exception as err:  # the outputs are written; only the record is missing
        print(f"gfssm {command}: not recorded in MLflow: {err}", file=sys.stderr, flush=True)
        return
    print(
        f"recorded in MLflow: run {run_id} ({command}, {len(metrics)} metrics) under the "
        f"model's run {model_run} at {client.tracking_uri}",
        file=sys.stderr,
        flush=True,
    )
