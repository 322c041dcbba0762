"""``gfssm score KIND ...``: the scoring jobs of every installed task (e.g. ``genome``)."""

from gfssm.pipelines.cli.common import add_task_subcommands


def add(sub) -> None:
    p = sub.add_parser("score", help="batch-score with a trained model on Ray Data")
    add_task_subcommands(p, "score", "KIND")
