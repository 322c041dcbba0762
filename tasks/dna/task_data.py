"""Everything the DNA task derives from its settings: the genome, the split, the window
samplers and the fitted Markov baseline (made once per settings and reused)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from gfssm.tasks.dna.genome import Genome
from gfssm.tasks.dna.markov import MarkovModel
from gfssm.tasks.dna.regions import Interval, Split, read_bed, split_regions
from gfssm.tasks.dna.settings import DnaSettings
from gfssm.tasks.dna.windows import (
    TrainingWindows,
    Window,
    WindowError,
    n_fraction,
    spread,
    too_short_message,
    validation_windows,
)

log = logging.getLogger(__name__)
MARKOV_CHUNK = 1 << 22


@dataclass(frozen=True)
class BaselineTotals:
    """The Markov baseline summed over a set of windows: NLL (nats), bases, correct."""

    nll: float
    count: int
    correct: int


class DnaData:
    """Genome access and windows for one :class:`DnaSettings`."""

    def __init__(self, settings: DnaSettings) -> None:
        self.settings = settings
        # evaluation windows and baseline totals per requested count (fixed, so made once)
        self._evaluation: dict[int | None, tuple[list[Window], int]] = {}
        self._baseline: dict[int | None, BaselineTotals] = {}
        self.genome = Genome(
            settings.genome_path(),
            cache_dir=settings.cache_dir,
            convert_compressed=settings.convert_compressed,
            aliases=settings.contig_aliases,
        )

    @cached_property
    def n_runs(self) -> list[Interval]:
        """N runs long enough that no window holding one could pass ``max_n_fraction``;
        they are cut out of every region so that random windows rarely land on gaps."""
        s = self.settings
        shortest = max(1, int(s.max_n_fraction * min(s.window_length, s.eval_length)) + 1)
        return [Interval(c, a, b) for c, a, b in self.genome.n_runs() if b - a >= shortest]

    @cached_property
    def split(self) -> Split:
        s, genome = self.settings, self.genome
        exclude = read_bed(s.exclude_bed, genome) if s.exclude_bed else []
        split = split_regions(
            genome,
            include=read_bed(s.include_bed, genome) if s.include_bed else None,
            exclude=exclude + self.n_runs,
            val_contigs=s.val_contigs,
            val_regions=read_bed(s.val_bed, genome) if s.val_bed else None,
            val_fraction=s.val_fraction,
            min_val_length=s.eval_length,
        )
        short = [iv for iv in split.train if iv.length < s.window_length]
        if short:
            log.warning(
                "%d training region(s) shorter than window_length=%d are not used, e.g. %s",
                len(short),
                s.window_length,
                short[0],
            )
        return split

    def _all_n_note(self) -> str:
        if not self.n_runs:
            return ""
        covered = sum(iv.length for iv in self.n_runs)
        return (
            f" ({covered:,} of {self.genome.total_length:,} bases are in N runs, which are "
            f"cut out; are the chosen regions all N?)"
        )

    @cached_property
    def training(self) -> TrainingWindows:
        s = self.settings
        try:
            return TrainingWindows(
                self.genome,
                self.split.train,
                window_length=s.window_length,
                max_n_fraction=s.max_n_fraction,
                rc_augment=s.rc_augment,
            )
        except WindowError as err:
            raise WindowError(f"{err}{self._all_n_note()}") from err

    @cached_property
    def validation(self) -> list[Window]:
        s = self.settings
        if not self.split.validation:
            raise WindowError(
                f"{self.genome.path}: no validation region; every region is shorter than "
                f"eval window {s.eval_length:,} / val_fraction={s.val_fraction} (set "
                f"val_contigs or val_bed, or raise val_fraction)"
            )
        windows = validation_windows(self.split.validation, s.eval_length)
        if not windows:
            raise WindowError(
                too_short_message("validation", self.split.validation, s.eval_length, self.genome)
                + self._all_n_note()
            )
        return windows

    @cached_property
    def markov(self) -> MarkovModel:
        """The baseline fitted on (up to ``markov_max_bases`` of) the training regions."""
        s = self.settings
        model = MarkovModel(s.markov_order, s.markov_alpha)
        # (stretch, lead): a little overlap so that contexts continue across stretches
        chunks = [
            (
                iv.contig,
                start,
                min(iv.end, start + MARKOV_CHUNK),
                min(s.markov_order, start - iv.start),
            )
            for iv in self.split.train
            for start in range(iv.start, iv.end, MARKOV_CHUNK)
        ]
        wanted = -(-s.markov_max_bases // MARKOV_CHUNK)
        if wanted < len(chunks):
            keep = np.unique(np.linspace(0, len(chunks) - 1, wanted).round().astype(int))
            chunks = [chunks[i] for i in keep]
        for contig, start, end, lead in chunks:
            tokens, _ = self.genome.tokens(contig, start - lead, end)
            model.fit(tokens, first=lead)
        return model

    def evaluation_windows(self, count: int | None) -> tuple[list[Window], int]:
        """``count`` validation windows spread evenly (all if None), without those over
        ``max_n_fraction``; returns (windows, number skipped for N)."""
        if count not in self._evaluation:
            kept, skipped = [], 0
            for w in spread(self.validation, count):
                tokens, _ = self.genome.tokens(w.contig, w.start, w.end)
                if n_fraction(tokens) > self.settings.max_n_fraction:
                    skipped += 1
                else:
                    kept.append(w)
            if not kept:
                raise WindowError(
                    f"{self.genome.path}: every validation window has more than "
                    f"max_n_fraction={self.settings.max_n_fraction} N; nothing to evaluate"
                    + self._all_n_note()
                )
            self._evaluation[count] = (kept, skipped)
        return self._evaluation[count]

    def baseline_totals(self, count: int | None) -> BaselineTotals:
        """The Markov baseline on :meth:`evaluation_windows` (computed once per count)."""
        if count not in self._baseline:
            nll, bases, correct = 0.0, 0, 0
            for w in self.evaluation_windows(count)[0]:
                tokens, _ = self.genome.tokens(w.contig, w.start, w.end)
                scores = self.markov.score(tokens, first=1)
                nll -= float(scores.logprob.sum())
                bases += scores.logprob.size
                correct += int((scores.predicted == scores.target).sum())
            self._baseline[count] = BaselineTotals(nll, bases, correct)
        return self._baseline[count]
