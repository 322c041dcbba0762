"""The work of scoring a genome, cut into independent items.

One item scores bases ``[start, end)`` of one contig. Without segmenting there is one item
per contig (or BED region) and every base sees its whole upstream context. With
``segment_length`` a long region is cut into segments that can run in parallel; each then
reads ``warmup`` bases before its start (and after its end, for the reverse-complement
pass) to rebuild the model's state, but not the whole upstream context.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from gfssm.tasks.dna.genome import Genome
from gfssm.tasks.dna.regions import Interval, merge, whole_contigs


@dataclass(frozen=True)
class WorkItem:
    """Score bases ``[start, end)`` of ``contig``; the forward stream starts reading at
    ``context_start`` and the reverse-complement stream at ``context_end`` (exclusive)."""

    index: int
    contig: str
    start: int
    end: int
    context_start: int
    context_end: int

    @property
    def length(self) -> int:
        return self.end - self.start

    @property
    def key(self) -> str:
        """A file-name-safe unique name, e.g. ``00003_chr1_0_1000000``."""
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.contig).strip("_")[:60]
        return f"{self.index:05d}_{safe}_{self.start}_{self.end}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> WorkItem:
        return cls(**values)


def plan_scoring(
    genome: Genome,
    regions: list[Interval] | None = None,
    *,
    segment_length: int | None = None,
    warmup: int = 0,
) -> list[WorkItem]:
    """Items covering ``regions`` (default: every contig whole), in genome order.

    ``segment_length`` cuts regions into pieces of at most that many bases; ``warmup`` bases
    of context are read on each side where the contig has them (also for whole regions, so
    a BED region's first bases see upstream sequence).
    """
    if segment_length is not None and segment_length < 1:
        raise ValueError(f"segment_length={segment_length}: expected >= 1 or None")
    if warmup < 0:
        raise ValueError(f"warmup={warmup}: expected >= 0")
    targets = merge(regions if regions is not None else whole_contigs(genome), genome.contigs)
    items: list[WorkItem] = []
    for region in targets:
        length = genome.lengths[region.contig]
        step = segment_length or region.length
        for start in range(region.start, region.end, step):
            end = min(region.end, start + step)
            items.append(
                WorkItem(
                    index=len(items),
                    contig=region.contig,
                    start=start,
                    end=end,
                    context_start=max(0, start - warmup),
                    context_end=min(length, end + warmup),
                )
            )
    return items
