"""The ``synthetic`` task plugin: long-context problems generated on the fly.

Training draws sequences of ``train_length`` only; evaluation asks fresh examples (from a
seed of their own, the same for every run) at the training length and at the longer
``eval_lengths``, so length generalisation is measured on lengths never trained on.
Metrics: ``accuracy`` (asked positions, at the training length), ``accuracy_L<n>`` per
length, ``length_gen_accuracy`` (mean over the eval lengths), ``sequence_accuracy``
(every asked position of a sequence right, at the training length) and ``loss``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from gfssm import ConfigError, GFSSMConfig, GFSSMForCausalLM
from gfssm.tasks.base import Batch, StepOutput, Task, TaskSettings, move_batch
from gfssm.tasks.synthetic.generators import IGNORE, Problem, seeded

DEFAULT_VOCAB = {"mqar": 8192, "induction": 32, "selective_copy": 32, "passkey": 64}
EVAL_STREAM = 0xE7A1  # evaluation examples never come from a training stream


class SyntheticSettings(TaskSettings):
    """Which problem, its sizes, and the training and evaluation lengths."""

    kind: Literal["mqar", "induction", "selective_copy", "passkey"] = "mqar"
    vocab_size: int | None = Field(None, ge=8, description="default: 8192 for mqar, else small")
    train_length: int = Field(256, ge=8, le=1 << 20, description="tokens per training sequence")
    eval_lengths: tuple[int, ...] | None = Field(
        None, description="longer lengths tested but never trained on (default 2x and 4x)"
    )
    pairs_per_token: float = Field(1 / 16, gt=0, le=0.25, description="mqar: pairs per token")
    copy_tokens: int = Field(16, ge=1, description="selective_copy: tokens to copy")
    passkey_digits: int = Field(5, ge=1, description="passkey: digits of the key")
    eval_samples: int = Field(64, ge=1, description="examples per evaluation length")
    eval_seed: int = Field(0, ge=0, description="seed of the evaluation examples")

    @model_validator(mode="after")
    def _lengths_apart(self) -> SyntheticSettings:
        lengths = self.lengths_to_eval()
        if self.train_length in lengths:
            raise ValueError(
                f"eval_lengths {list(lengths)} include train_length {self.train_length}: "
                "evaluation lengths must be ones never trained on"
            )
        least = self.problem().min_length()
        short = [n for n in (self.train_length, *lengths) if n < least]
        if short:
            raise ValueError(f"lengths {short}: {self.kind} needs sequences of {least} or more")
        return self

    def lengths_to_eval(self) -> tuple[int, ...]:
        if self.eval_lengths is None:
            return (2 * self.train_length, 4 * self.train_length)
        return tuple(int(n) for n in self.eval_lengths)

    def problem(self) -> Problem:
        return Problem(
            kind=self.kind,
            vocab_size=self.vocab_size or DEFAULT_VOCAB[self.kind],
            pairs_per_token=self.pairs_per_token,
            copy_tokens=self.copy_tokens,
            passkey_digits=self.passkey_digits,
        )


def make_batch(inputs, targets) -> Batch:
    return {"input_ids": torch.from_numpy(inputs), "targets": torch.from_numpy(targets)}


class SyntheticTask(Task):
    """Causal LM on generated sequences; loss and accuracy on the asked positions only."""

    name: ClassVar[str] = "synthetic"
    settings_type: ClassVar[type[SyntheticSettings]] = SyntheticSettings

    def model_defaults(self, settings: SyntheticSettings) -> dict[str, Any]:
        return {"vocab_size": settings.problem().vocab_size}

    def build_model(self, config: GFSSMConfig, settings: SyntheticSettings) -> nn.Module:
        needed = settings.problem().vocab_size
        if config.vocab_size < needed:
            raise ConfigError(
                f"GFSSMConfig.vocab_size={config.vocab_size}: {settings.kind} uses {needed} tokens"
            )
        return GFSSMForCausalLM(config)

    def train_batches(
        self,
        settings: SyntheticSettings,
        *,
        seed: int,
        rank: int,
        world_size: int,
        batch_size: int,
        start_step: int = 0,
    ) -> Iterator[Batch]:
        """Endless batches: input_ids, targets (b, train_length); the batch of a step depends
        only on (seed, rank, world_size, step)."""
        problem = settings.problem()
        step = start_step
        while True:
            rng = seeded(seed, 1, rank, world_size, step)
            yield make_batch(*problem.generate(rng, batch_size, settings.train_length))
            step += 1

    def training_step(self, model: nn.Module, batch: Batch) -> StepOutput:
        logits = model(batch["input_ids"])
        targets = batch["targets"]
        asked = targets != IGNORE
        loss = F.cross_entropy(logits[asked].float(), targets[asked])
        correct = (logits[asked].argmax(-1) == targets[asked]).float().mean()
        return StepOutput(
            loss=loss,
            metrics={"accuracy": float(correct)},
            count=int(asked.sum()),
            tokens=int(targets.numel()),
        )

    @torch.no_grad()
    def evaluate(
        self,
        model: nn.Module,
        settings: SyntheticSettings,
        *,
        batch_size: int,
        max_batches: int | None = None,
        device: torch.device | str = "cpu",
    ) -> dict[str, float]:
        problem = settings.problem()
        out: dict[str, float] = {}
        lengths = (settings.train_length, *settings.lengths_to_eval())
        for length in lengths:
            # Long sequences get smaller batches: the same tokens per forward pass.
            rows = max(1, batch_size * settings.train_length // length)
            rng = seeded(settings.eval_seed, EVAL_STREAM, length)
            totals = {"loss": 0.0, "right": 0.0, "asked": 0.0, "seq_right": 0.0, "seqs": 0.0}
            done = 0
            while done < settings.eval_samples:
                n = min(rows, settings.eval_samples - done)
                batch = move_batch(make_batch(*problem.generate(rng, n, length)), device)
                _score(model, batch, totals)
                done += n
            accuracy = totals["right"] / max(totals["asked"], 1.0)
            out[f"accuracy_L{length}"] = accuracy
            if length == settings.train_length:
                out["loss"] = totals["loss"] / max(totals["asked"], 1.0)
                out["accuracy"] = accuracy
                out["sequence_accuracy"] = totals["seq_right"] / max(totals["seqs"], 1.0)
        longer = [out[f"accuracy_L{n}"] for n in settings.lengths_to_eval()]
        out["length_gen_accuracy"] = sum(longer) / len(longer)
        return out


def _score(model: nn.Module, batch: Batch, totals: dict[str, float]) -> None:
    logits = model(batch["input_ids"]).float()
    targets = batch["targets"]
    asked = targets != IGNORE
    loss = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE, reduction="sum")
    right = (logits.argmax(-1) == targets) & asked
    totals["loss"] += float(loss)
    totals["right"] += float(right.sum())
    totals["asked"] += float(asked.sum())
    totals["seq_right"] += float((right.sum(1) == asked.sum(1)).sum())
    totals["seqs"] += float(targets.shape[0])
