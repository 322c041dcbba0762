"""``gfssm embed ...``: the task command that stands alone under this name."""

from gfssm.pipelines.cli.batch_command import add_standalone


def add(sub) -> None:
    add_standalone(sub, "embed")
