"""``gfssm embed ...``: the task command that stands alone under this name."""

from gfssm.pipelines.cli import batch_command
from gfssm.pipelines.cli.common import task_commands


def add(sub) -> None:
    found = [(t, c) for t, c in task_commands("embed") if c.name is None]
    if not found:
        return
    task, spec = found[0]
    p = sub.add_parser("embed", help=spec.help, description=spec.description or spec.help)
    batch_command.attach(p, task, spec)
