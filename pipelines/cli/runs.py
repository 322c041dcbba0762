"""``gfssm runs list|show|compare``: tables of MLflow runs from any tracking URI."""

from __future__ import annotations

import argparse

from gfssm.pipelines.cli.common import add_tracking


def add(sub) -> None:
    r = sub.add_parser("runs", help="tables of MLflow runs")
    acts = r.add_subparsers(dest="action", required=True, metavar="{list,show,compare}")
    lst = acts.add_parser("list", help="recent runs")
    lst.add_argument("--experiment", help="MLflow experiment (default: all)")
    lst.add_argument("--task")
    lst.add_argument("--limit", type=int, default=20)
    show = acts.add_parser("show", help="one run: tags, metrics, params, artifacts")
    show.add_argument("run", help="run id or name")
    cmp_ = acts.add_parser("compare", help="runs side by side")
    cmp_.add_argument("runs", nargs="+", help="run ids or names")
    for p in (lst, show, cmp_):
        add_tracking(p)
        p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from gfssm.pipelines import runs as runs_api
    from gfssm.pipelines.tracking import mark_orphaned_runs, tracking_client

    client = tracking_client(args.tracking_uri)
    mark_orphaned_runs(client)
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
