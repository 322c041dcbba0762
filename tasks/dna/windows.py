"""Training and validation windows, and the batches made from them.

Training windows are drawn uniformly over all valid start positions of the training
intervals, so contigs are weighted by length. Window ``i`` of step ``s`` depends only on
``(seed, s, i)``: worker ``rank`` of ``world_size`` takes global indices
``rank * batch_size ...``, so resuming at any step neither repeats nor skips data.
Validation windows tile the validation intervals, which share no base with the training
intervals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gfssm.tasks.dna.genome import Genome
from gfssm.tasks.dna.regions import Interval
from gfssm.tasks.dna.tokens import N_BASES, N, reverse_complement
from gfssm.tasks.jobs import TaskInputError

IGNORE_INDEX = -100


class WindowError(TaskInputError):
    """No window can be drawn (regions too short, or all N)."""


@dataclass(frozen=True)
class Window:
    """Bases ``[start, end)`` of ``contig``, read on the reverse strand when ``reverse``."""

    contig: str
    start: int
    end: int
    reverse: bool = False


def too_short_message(kind: str, intervals: Sequence[Interval], window_length: int, genome):
    longest = max(intervals, key=lambda iv: iv.length, default=None)
    where = f"; the longest is {longest} ({longest.length:,} bp)" if longest else ""
    return (
        f"{genome.path}: window_length={window_length:,} is longer than every {kind} region"
        f"{where}; expected window_length <= region length (lower window_length)"
    )


def n_fraction(tokens: np.ndarray) -> float:
    return float(np.count_nonzero(tokens == N)) / max(1, tokens.size)


class TrainingWindows:
    """Deterministic random windows over ``intervals`` of ``genome``."""

    def __init__(
        self,
        genome: Genome,
        intervals: Sequence[Interval],
        *,
        window_length: int,
        max_n_fraction: float,
        rc_augment: bool,
        max_tries: int = 64,
    ) -> None:
        self.genome = genome
        self.window_length = window_length
        self.max_n_fraction = max_n_fraction
        self.rc_augment = rc_augment
        self.max_tries = max_tries
        self.intervals = [iv for iv in intervals if iv.length >= window_length]
        if not self.intervals:
            raise WindowError(too_short_message("training", intervals, window_length, genome))
        starts = np.array([iv.length - window_length + 1 for iv in self.intervals], np.int64)
        self._cumulative = np.cumsum(starts)

    def sample(self, seed: int, step: int, index: int) -> tuple[Window, np.ndarray, np.ndarray]:
        """Window ``index`` of ``step``: (window, tokens (L,), soft-mask (L,)) in the
        window's reading direction."""
        rng = np.random.default_rng([seed, step, index])
        total = int(self._cumulative[-1])
        for _ in range(self.max_tries):
            pos = int(rng.integers(total))
            k = int(np.searchsorted(self._cumulative, pos, side="right"))
            offset = pos - (int(self._cumulative[k - 1]) if k else 0)
            iv = self.intervals[k]
            start = iv.start + offset
            reverse = bool(self.rc_augment and rng.random() < 0.5)
            tokens, soft = self.genome.tokens(iv.contig, start, start + self.window_length)
            if n_fraction(tokens) <= self.max_n_fraction:
                window = Window(iv.contig, start, start + self.window_length, reverse)
                if reverse:
                    return window, reverse_complement(tokens), soft[::-1].copy()
                return window, tokens, soft
        raise WindowError(
            f"{self.genome.path}: no training window of {self.window_length:,} bases with at "
            f"most {self.max_n_fraction:.0%} N found in {self.max_tries} random draws; the "
            f"training regions look (almost) all N. Exclude N runs with exclude_bed, raise "
            f"max_n_fraction or lower window_length"
        )

    def batch(
        self,
        seed: int,
        step: int,
        rank: int,
        world_size: int,
        batch_size: int,
        softmask_weight: float,
    ) -> dict[str, torch.Tensor]:
        first = rank * batch_size
        rows = [self.sample(seed, step, first + i) for i in range(batch_size)]
        return make_batch([r[1] for r in rows], [r[2] for r in rows], softmask_weight)


def validation_windows(intervals: Sequence[Interval], window_length: int) -> list[Window]:
    """Non-overlapping windows tiling each interval from its start (a remainder shorter
    than ``window_length`` is left out)."""
    out = []
    for iv in intervals:
        for start in range(iv.start, iv.end - window_length + 1, window_length):
            out.append(Window(iv.contig, start, start + window_length))
    return out


def spread(items: Sequence, count: int | None) -> list:
    """``count`` items evenly spread over ``items`` (all of them if ``count`` is None)."""
    if count is None or count >= len(items):
        return list(items)
    picks = np.unique(np.linspace(0, len(items) - 1, max(1, count)).round().astype(int))
    return [items[i] for i in picks]


def make_batch(
    tokens: Sequence[np.ndarray], softmask: Sequence[np.ndarray], softmask_weight: float
) -> dict[str, torch.Tensor]:
    """Next-base batch from windows of equal length L.

    input_ids (b, L-1) int64; labels (b, L-1) int64 with ``-100`` where the next base is N;
    loss_weight (b, L-1) float32: 0 where ignored, ``softmask_weight`` on soft-masked bases.
    """
    ids = torch.from_numpy(np.stack(tokens))
    soft = torch.from_numpy(np.stack(softmask))
    targets = ids[:, 1:]
    valid = targets < N_BASES
    labels = torch.where(valid, targets, torch.full_like(targets, IGNORE_INDEX))
    weight = torch.where(soft[:, 1:], softmask_weight, 1.0).float() * valid.float()
    return {"input_ids": ids[:, :-1].contiguous(), "labels": labels, "loss_weight": weight}
