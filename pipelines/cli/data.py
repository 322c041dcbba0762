"""``gfssm data STEP ...``: the data preparation steps of every installed task."""

from gfssm.pipelines.cli.common import add_task_subcommands


def add(sub) -> None:
    p = sub.add_parser("data", help="prepare data (indexes, conversions, corpora, manifests)")
    add_task_subcommands(p, "data", "STEP")
