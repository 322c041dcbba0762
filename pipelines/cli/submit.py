"""``gfssm submit -- gfssm ...``: run any gfssm command as a Ray job and follow it."""

from __future__ import annotations

import argparse
from pathlib import Path

from gfssm.pipelines.cli.common import say


def add(sub) -> None:
    s = sub.add_parser(
        "submit",
        help="submit a gfssm command as a Ray job",
        description="Ship this checkout as a wheel and run a gfssm command on "
        "a Ray cluster: gfssm submit --address http://HEAD:8265 -- gfssm train dna",
    )
    s.add_argument(
        "--address",
        help="dashboard URL (default: RAY_API_SERVER_ADDRESS, an http "
        "RAY_ADDRESS, or http://127.0.0.1:8265)",
    )
    s.add_argument("--wheel", help="ship this wheel instead of building one")
    s.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment variable for the job (repeatable)",
    )
    s.add_argument("--tracking-uri", help="MLflow URI for the job (default: the local one)")
    s.add_argument("--no-wait", action="store_true", help="return after submitting")
    s.add_argument("command", nargs=argparse.REMAINDER, help="-- gfssm COMMAND ...")
    s.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
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
        wheel=Path(args.wheel).expanduser() if args.wheel else None,
        env=env,
        tracking_uri=args.tracking_uri,
        log=say,
    )
    if args.no_wait:
        say(f"follow: gfssm jobs logs {submission_id} --follow --address {address}")
        return 0
    try:
        status = jobs.follow(submission_id, address=address)
    except KeyboardInterrupt:
        say(
            f"\nstopped following; the job keeps running. Stop it: gfssm jobs stop "
            f"{submission_id} --address {address}"
        )
        return 130
    say(f"job {submission_id}: {status}")
    return 0 if status == "SUCCEEDED" else 1
