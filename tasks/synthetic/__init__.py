"""Synthetic long-context tasks (associative recall, induction heads, selective copying,
passkey retrieval): the ``synthetic`` task plugin used by ``gfssm study``."""

from gfssm.tasks.synthetic.generators import IGNORE, KINDS, Problem, seeded
from gfssm.tasks.synthetic.task import SyntheticSettings, SyntheticTask

__all__ = ["IGNORE", "KINDS", "Problem", "SyntheticSettings", "SyntheticTask", "seeded"]
