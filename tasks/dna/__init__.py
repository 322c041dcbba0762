"""DNA: next-base GFSSM models on long genome windows, whole-genome and variant scoring.

The task plugin is :class:`gfssm.tasks.dna.task.DnaTask` (entry point ``dna``); genome
access is :class:`Genome`; see ``README.md`` beside this file for a tour.
"""

from gfssm.tasks.dna.genome import ContigNameError, Genome
from gfssm.tasks.dna.markov import MarkovModel
from gfssm.tasks.dna.regions import Interval, read_bed
from gfssm.tasks.dna.settings import DnaSettings, bundled_genome
from gfssm.tasks.dna.task import DnaTask

__all__ = [
    "ContigNameError",
    "DnaSettings",
    "DnaTask",
    "Genome",
    "Interval",
    "MarkovModel",
    "bundled_genome",
    "read_bed",
]
