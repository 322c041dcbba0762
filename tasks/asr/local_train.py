"""Train an ``asr`` model in one process on this machine, within a wall-clock budget.

For quick experiments and small machines; multi-worker training, tuning and tracking go
through the Ray pipelines, which drive the same :class:`~gfssm.tasks.asr.task.AsrTask`.
The learning rate warms up, then decays linearly to zero at whichever comes first, the
step or the time budget, so a short budget still ends on a low learning rate.

    python -m gfssm.tasks.asr.local_train --train corpus/train.jsonl \
        --valid corpus/valid.jsonl --minutes 20 --out runs/asr
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from gfssm import param_groups
from gfssm.tasks.asr.model import count_parameters
from gfssm.tasks.asr.task import AsrSettings, AsrTask
from gfssm.tasks.pretrained import save_model


def parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def pairs(items: Sequence[str], what: str) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"{what}: expected key=value, got {item!r}")
        out[key] = parse_value(value)
    return out


def train(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    task = AsrTask()
    settings = AsrSettings(train_data=args.train, valid_data=args.valid, **pairs(args.set, "--set"))
    config = task.model_config(args.preset, pairs(args.model, "--model"), settings)
    model = task.build_model(config, settings)
    optimizer = torch.optim.AdamW(
        param_groups(model, args.weight_decay), lr=args.lr, betas=(0.9, 0.98)
    )
    batches = task.train_batches(
        settings, seed=args.seed, rank=0, world_size=1, batch_size=args.batch_size
    )
    print(f"model: {count_parameters(model) / 1e6:.2f}M parameters, {config.to_dict()}")
    budget = args.minutes * 60.0
    start, cpu_start = time.monotonic(), time.process_time()
    history = []
    step, seconds_seen, loss_avg = 0, 0.0, None
    model.train()
    while True:
        elapsed = time.monotonic() - start
        cpu = time.process_time() - cpu_start
        progress = max(
            step / args.steps if args.steps else 0.0,
            elapsed / budget,
            cpu / (args.cpu_minutes * 60) if args.cpu_minutes else 0.0,
        )
        if progress >= 1.0:
            break
        warm = min(1.0, (step + 1) / args.warmup_steps)
        for group in optimizer.param_groups:
            group["lr"] = args.lr * warm * min(1.0, (1.0 - progress) / (1.0 - args.decay_from))
        out = task.training_step(model, next(batches))
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        optimizer.step()
        step += 1
        seconds_seen += out.metrics["audio_seconds"]
        loss = float(out.loss.detach())
        loss_avg = loss if loss_avg is None else 0.95 * loss_avg + 0.05 * loss
        if step % args.log_every == 0:
            rec = {
                "step": step,
                "minutes": round(elapsed / 60, 2),
                "cpu_minutes": round((time.process_time() - cpu_start) / 60, 2),
                "loss": round(loss_avg, 4),
                "audio_hours": round(seconds_seen / 3600, 3),
                "lr": optimizer.param_groups[0]["lr"],
            }
            if args.eval_every and step % args.eval_every == 0:
                rec.update(
                    task.evaluate(model, settings, batch_size=16, max_batches=args.eval_batches)
                )
            history.append(rec)
            print(json.dumps(rec), flush=True)
    train_minutes = (time.monotonic() - start) / 60
    cpu_minutes = (time.process_time() - cpu_start) / 60
    final = task.evaluate(model, settings, batch_size=16)
    summary = {
        "steps": step,
        "train_minutes": round(train_minutes, 2),
        "cpu_minutes": round(cpu_minutes, 2),
        "audio_hours_seen": round(seconds_seen / 3600, 3),
        "valid": final,
        "parameters": count_parameters(model),
    }
    print(json.dumps(summary), flush=True)
    if args.out:
        save_model(
            args.out,
            task=task,
            model=model,
            config=config,
            settings=settings,
            extra={"training": summary, "history": history},
        )
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m gfssm.tasks.asr.local_train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--train", nargs="+", required=True, help="training manifests / folders")
    p.add_argument("--valid", nargs="+", required=True, help="validation manifests / folders")
    p.add_argument("--out", default=None, help="model directory to write")
    p.add_argument("--minutes", type=float, default=20.0, help="wall-clock training budget")
    p.add_argument("--steps", type=int, default=0, help="step budget (0: time only)")
    p.add_argument(
        "--cpu-minutes",
        type=float,
        default=0.0,
        help="budget of this process's CPU time (0: none); fair comparisons on a shared machine",
    )
    p.add_argument("--preset", default="gfssm")
    p.add_argument("--model", nargs="*", default=[], help="model overrides key=value")
    p.add_argument("--set", nargs="*", default=[], help="task settings key=value")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--decay-from", type=float, default=0.3, help="progress where decay starts")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--eval-every", type=int, default=0)
    p.add_argument("--eval-batches", type=int, default=4)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.out and Path(args.out).exists() and any(Path(args.out).iterdir()):
        raise SystemExit(f"{args.out}: exists and is not empty; choose a new --out")
    train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
