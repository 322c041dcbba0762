"""``toy``: next-digit prediction on lines of digits, written as a third party would.

It uses only the public interface (``gfssm.tasks``), so whatever gfssm does for it, it does
for any plugin: its paths are resolved and checked by :meth:`ToyTask.prepare`, it offers a
batch job (``gfssm score toy``), a data step (``gfssm data toy-make``) and a predictor.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import torch
import torch.nn.functional as F
from pydantic import Field

from gfssm import GFSSMConfig, GFSSMForCausalLM
from gfssm.tasks import (
    BatchJob,
    PredictorSpec,
    StepOutput,
    Task,
    TaskCommand,
    TaskInputError,
    TaskSettings,
    WorkItem,
    existing_file,
    resolve_path,
)

VOCAB = 10


class ToySettings(TaskSettings):
    data: str = Field(..., description="text file: one line of digits per sequence")
    length: int = Field(24, ge=4)


def read_digits(path: Path) -> list[list[int]]:
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if not line.isdigit():
            raise TaskInputError(f"{path}: line {number}: expected only digits, got {line[:20]!r}")
        rows.append([int(c) for c in line])
    if not rows:
        raise TaskInputError(f"{path}: no sequences (expected lines of digits)")
    return rows


def log_prob(model: torch.nn.Module, digits: list[int]) -> float:
    ids = torch.tensor([digits])
    with torch.no_grad():
        logits = model(ids[:, :-1]).float()
    return float(-F.cross_entropy(logits[0], ids[0, 1:], reduction="sum"))


class ScoreJob(BatchJob):
    unit = "line"
    description = "scoring lines"

    def __init__(self, source: Path, out: Path, delay: float) -> None:
        self.source, self.out, self.delay = source, out, delay
        self.rows = read_digits(source)

    def plan(self) -> list[WorkItem]:
        return [WorkItem(f"line{i:05d}", {"digits": r}) for i, r in enumerate(self.rows)]

    def fingerprint(self) -> dict[str, Any]:
        stat = self.source.stat()
        return {"source": str(self.source), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}

    def shard_dir(self) -> Path:
        return self.out.with_name(self.out.name + ".shards")

    def make_worker(self, loaded):
        model, delay = loaded.model, self.delay

        def work(payload: dict[str, Any]) -> bytes:
            time.sleep(delay)  # lets tests interrupt a job that is under way
            return json.dumps(log_prob(model, payload["digits"])).encode()

        return work

    def finish(self, results, log) -> int:
        lines = [f"{i}\t{json.loads(results(item.key)):.6f}" for i, item in enumerate(self.plan())]
        tmp = self.out.with_name(self.out.name + ".partial")
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, self.out)
        log(f"{len(lines)} scores in {self.out}")
        return 0


def _score_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", required=True, help="lines of digits")
    p.add_argument("--out", required=True, help="output TSV")
    p.add_argument("--delay", type=float, default=0.0, help="seconds per line (tests)")


def _make_job(args: argparse.Namespace, base_dir: Path, loaded) -> ScoreJob:
    source = existing_file(args.input, base_dir, "--input")
    return ScoreJob(source, Path(resolve_path(args.out, base_dir)), args.delay)


def _make_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True)
    p.add_argument("--lines", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)


def _make_data(args: argparse.Namespace, base_dir: Path, log) -> int:
    rng = random.Random(args.seed)
    out = Path(resolve_path(args.out, base_dir))
    # a learnable pattern: each digit is the previous plus a per-line step
    lines = []
    for _ in range(args.lines):
        start, step = rng.randrange(10), rng.randrange(1, 4)
        lines.append("".join(str((start + step * i) % 10) for i in range(32)))
    out.write_text("\n".join(lines) + "\n")
    log(f"{out}: {args.lines} lines")
    return 0


def _predict(loaded, frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {"log_prob": [log_prob(loaded.model, [int(c) for c in str(s)]) for s in frame["digits"]]}
    )


class ToyTask(Task):
    name: ClassVar[str] = "toy"
    settings_type: ClassVar[type[TaskSettings]] = ToySettings

    def prepare(self, settings, base_dir: Path):
        path = existing_file(settings.data, base_dir, "task.data")
        read_digits(path)
        return settings.model_copy(update={"data": str(path)})

    def model_defaults(self, settings) -> dict[str, Any]:
        return {"vocab_size": VOCAB}

    def build_model(self, config: GFSSMConfig, settings) -> torch.nn.Module:
        return GFSSMForCausalLM(config)

    def train_batches(
        self, settings, *, seed, rank, world_size, batch_size, start_step=0
    ) -> Iterator[dict[str, torch.Tensor]]:
        rows = read_digits(Path(settings.data))  # a relative path here would be a bug
        step = start_step
        while True:
            rng = random.Random(seed * 100003 + step * 101 + rank)
            picked = [rows[rng.randrange(len(rows))][: settings.length] for _ in range(batch_size)]
            ids = torch.tensor(picked)
            yield {"input_ids": ids[:, :-1], "labels": ids[:, 1:]}
            step += 1

    def training_step(self, model, batch) -> StepOutput:
        logits = model(batch["input_ids"]).float()
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), batch["labels"].reshape(-1))
        return StepOutput(loss=loss, count=int(batch["labels"].numel()))

    def evaluate(self, model, settings, *, batch_size, max_batches=None, device="cpu"):
        rows = read_digits(Path(settings.data))[:8]
        total = sum(-log_prob(model.to("cpu"), r[: settings.length]) for r in rows)
        count = sum(len(r[: settings.length]) - 1 for r in rows)
        return {"loss": total / count, "perplexity": math.exp(total / count)}

    def commands(self) -> list[TaskCommand]:
        return [
            TaskCommand(
                "score", "toy", "log P of lines of digits", _score_args, make_job=_make_job
            ),
            TaskCommand("data", "toy-make", "write lines of digits", _make_args, run=_make_data),
        ]

    def predictor(self) -> PredictorSpec:
        return PredictorSpec(
            inputs=(("digits", "string"),),
            outputs=(("log_prob", "double"),),
            example={"digits": ["0123456789"]},
            predict=_predict,
        )

    def usage_hint(self, run_id: str) -> str:
        return f"gfssm score toy --model {run_id} --input digits.txt --out scores.tsv"
