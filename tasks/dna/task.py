"""The ``dna`` task plugin: next-base prediction on long genome windows.

Pipelines drive it through :class:`gfssm.tasks.Task` only: :meth:`DnaTask.prepare` resolves
and checks the user's files, :meth:`DnaTask.commands` offers ``gfssm score genome|variants``,
``gfssm embed``, ``gfssm eval dna-vep`` and ``gfssm data index|genbank|bgzip|snp2vcf``
(:mod:`gfssm.tasks.dna.commands`), and
:meth:`DnaTask.predictor` is the MLflow pyfunc. Genome-wide and variant scoring live in
:mod:`gfssm.tasks.dna.scoring` and :mod:`gfssm.tasks.dna.variants`.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from gfssm import ConfigError, GFSSMConfig, GFSSMForCausalLM
from gfssm.tasks.base import Batch, StepOutput, Task, move_batch
from gfssm.tasks.dna.objective import LN2, next_base_stats
from gfssm.tasks.dna.settings import DnaSettings, bundled_genome
from gfssm.tasks.dna.task_data import DnaData
from gfssm.tasks.dna.tokens import VOCAB_SIZE
from gfssm.tasks.dna.windows import make_batch
from gfssm.tasks.jobs import PredictorSpec, TaskCommand, existing_file, resolve_path

# settings that name input files, and how messages call them
INPUT_FILES = {
    "fasta": "task.fasta",
    "include_bed": "task.include_bed",
    "exclude_bed": "task.exclude_bed",
    "val_bed": "task.val_bed",
}


class DnaTask(Task):
    """Train a :class:`GFSSMForCausalLM` to predict the next base of genome windows, and
    evaluate it next to an order-k Markov baseline on the same validation windows."""

    name: ClassVar[str] = "dna"
    settings_type: ClassVar[type[DnaSettings]] = DnaSettings

    def __init__(self) -> None:
        # Opened genomes, splits and fitted baselines, per settings (made once, reused).
        self._data: dict[str, DnaData] = {}

    def __getstate__(self) -> dict:
        # Shipped to Ray workers: they rebuild genome handles and the baseline lazily.
        return {**self.__dict__, "_data": {}}

    def data(self, settings: DnaSettings) -> DnaData:
        key = settings.model_dump_json()
        if key not in self._data:
            self._data[key] = DnaData(settings)
        return self._data[key]

    def prepare(self, settings: DnaSettings, base_dir: Path) -> DnaSettings:
        """Paths made absolute against ``base_dir``; then the genome is opened (indexed, or
        converted into the cache once when compressed without random access), the BED files
        read, the split made and the training windows checked, so that a missing or
        malformed file, an unknown contig or a window longer than every region is reported
        here, in the driver, naming the file and line."""
        updates: dict[str, Any] = {}
        for key, what in INPUT_FILES.items():
            value = getattr(settings, key)
            if value:
                updates[key] = str(existing_file(value, base_dir, what))
        if settings.cache_dir:
            updates["cache_dir"] = resolve_path(settings.cache_dir, base_dir)
        prepared = settings.model_copy(update=updates)
        data = self.data(prepared)
        data.split  # noqa: B018 - reads the BED files, resolves val_contigs
        data.training  # noqa: B018 - windows fit into the training regions
        if prepared.val_contigs or prepared.val_bed or prepared.val_fraction > 0:
            data.validation  # noqa: B018
        return prepared

    def commands(self) -> list[TaskCommand]:
        from gfssm.tasks.dna.commands import dna_commands

        return dna_commands()

    def predictor(self) -> PredictorSpec:
        from gfssm.tasks.dna.predictor import PREDICTOR

        return PREDICTOR

    def usage_hint(self, run_id: str, settings: DnaSettings | None = None) -> str:
        """Scoring the genome the run trained on (the bundled one unless the user named one)."""
        fasta = settings.genome_path() if settings is not None else bundled_genome()
        return (
            f"gfssm score genome --model {run_id} --fasta {shlex.quote(str(fasta))} "
            f"--out scores/ --segment 1000000 --warmup 2000 --actors 2"
        )

    def model_defaults(self, settings) -> dict[str, Any]:
        return {"vocab_size": VOCAB_SIZE}

    def build_model(self, config: GFSSMConfig, settings) -> nn.Module:
        if config.vocab_size < VOCAB_SIZE:
            raise ConfigError(
                f"GFSSMConfig.vocab_size={config.vocab_size}: the dna task needs at least "
                f"{VOCAB_SIZE} tokens (A, C, G, T, N and specials)"
            )
        return GFSSMForCausalLM(config)

    def train_batches(
        self,
        settings,
        *,
        seed: int,
        rank: int,
        world_size: int,
        batch_size: int,
        start_step: int = 0,
    ) -> Iterator[Batch]:
        """Endless batches: input_ids (b, L-1), labels (b, L-1), loss_weight (b, L-1) with
        ``L = window_length``."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
        if batch_size < 1 or start_step < 0 or seed < 0:
            raise ValueError(
                f"expected batch_size >= 1, start_step >= 0 and seed >= 0; got "
                f"{batch_size}, {start_step}, {seed}"
            )
        windows = self.data(settings).training
        step = start_step
        while True:
            yield windows.batch(seed, step, rank, world_size, batch_size, settings.softmask_weight)
            step += 1

    def training_step(self, model: nn.Module, batch: Batch) -> StepOutput:
        logits = model(batch["input_ids"])
        stats = next_base_stats(logits, batch["labels"], batch.get("loss_weight"))
        count = max(stats.count, 1)
        return StepOutput(
            loss=stats.loss,
            metrics={
                "bits_per_base": stats.nll_sum / count / LN2,
                "accuracy": stats.correct / count,
            },
            count=stats.count,
        )

    @torch.no_grad()
    def evaluate(
        self,
        model: nn.Module,
        settings,
        *,
        batch_size: int,
        max_batches: int | None = None,
        device: torch.device | str = "cpu",
    ) -> dict[str, float]:
        """Model and Markov baseline on the same validation windows: ``loss`` (nats),
        ``bits_per_base``, ``accuracy`` and ``markov_*`` alike, plus counts."""
        data = self.data(settings)
        wanted = None if max_batches is None else max_batches * batch_size
        windows, skipped = data.evaluation_windows(wanted)
        baseline = data.baseline_totals(wanted)
        was_training = model.training
        model.eval()
        nll, count, correct = 0.0, 0, 0
        try:
            for first in range(0, len(windows), batch_size):
                rows = [
                    data.genome.tokens(w.contig, w.start, w.end)
                    for w in windows[first : first + batch_size]
                ]
                batch = move_batch(make_batch(*zip(*rows), softmask_weight=1.0), device)
                stats = next_base_stats(model(batch["input_ids"]), batch["labels"])
                nll += stats.nll_sum
                count += stats.count
                correct += stats.correct
        finally:
            model.train(was_training)
        return {
            "loss": nll / count,
            "bits_per_base": nll / count / LN2,
            "accuracy": correct / count,
            "markov_bits_per_base": baseline.nll / baseline.count / LN2,
            "markov_accuracy": baseline.correct / baseline.count,
            "markov_order": float(settings.markov_order),
            "bases": float(count),
            "windows": float(len(windows)),
            "windows_skipped_n": float(skipped),
        }
