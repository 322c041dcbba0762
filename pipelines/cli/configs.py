"""``gfssm configs [TASK]``: the bundled experiments, search spaces and studies."""

from __future__ import annotations

import argparse

from gfssm.pipelines.cli.common import say


def add(sub) -> None:
    p = sub.add_parser("configs", help="list bundled experiments, search spaces and studies")
    p.add_argument("task", nargs="?")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from gfssm.pipelines.bundled import bundled_experiments, bundled_spaces, bundled_studies
    from gfssm.pipelines.cli.common import load_task
    from gfssm.tasks.base import available_tasks

    if args.task:
        load_task(args.task)
    names = [args.task] if args.task else sorted(available_tasks())
    for name in names:
        say(f"{name}: experiments {', '.join(bundled_experiments(name)) or 'none'}")
    say(f"search spaces: {', '.join(bundled_spaces()) or 'none'}")
    say(f"studies: {', '.join(bundled_studies()) or 'none'}")
    return 0
