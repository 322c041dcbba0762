"""``gfssm eval KIND ...``: the evaluation jobs of every installed task (e.g. ``asr``)."""

from gfssm.pipelines.cli.common import add_task_subcommands


def add(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a trained model on labelled data (Ray Data)")
    add_task_subcommands(p, "eval", "KIND")
