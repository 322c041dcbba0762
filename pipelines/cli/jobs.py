"""``gfssm jobs list|logs|stop``: the Ray cluster's jobs."""

from __future__ import annotations

import argparse
import sys

from gfssm.pipelines.cli.common import say


def add(sub) -> None:
    j = sub.add_parser("jobs", help="list, show logs of, or stop Ray jobs")
    acts = j.add_subparsers(dest="action", required=True, metavar="{list,logs,stop}")
    for name, helptext in (
        ("list", "list jobs"),
        ("logs", "print a job's logs"),
        ("stop", "stop a job"),
    ):
        a = acts.add_parser(name, help=helptext)
        if name != "list":
            a.add_argument("job", help="submission id")
        if name == "logs":
            a.add_argument("--follow", "-f", action="store_true")
        a.add_argument("--address")
        a.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
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
            say(f"job {args.job}: {status}")
        else:
            sys.stdout.write(jobs_api.job_logs(args.job, args.address))
    else:
        stopped = jobs_api.stop_job(args.job, args.address)
        say(f"job {args.job}: {'stop requested' if stopped else 'already finished'}")
    return 0
