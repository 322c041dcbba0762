"""A study's results: per-trial rows from MLflow, a summary table with confidence intervals
across seeds (markdown and CSV) and plots, written to a folder and logged to the study's
parent run.

Divergence rates get Wilson score intervals (sound for few runs and rates of 0 or 1);
metric means get Student-t intervals across seeds. Every row names the parameter count.
"""

from __future__ import annotations

import csv
import math
import re
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from gfssm.pipelines.study_spec import StudySpec, Trial
from gfssm.pipelines.tracking import child_runs, metric_history

Z95 = 1.959964
# two-sided 95% Student-t quantiles for 1..30 degrees of freedom
T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
       2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
       2.060, 2.056, 2.052, 2.048, 2.045, 2.042]  # fmt: skip
STABILITY = ("diverged", "diverged_step", "max_grad_norm", "max_loss_spike")
SPEED = ("tokens_per_s", "peak_memory_mb")


def wilson(successes: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a rate."""
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% t interval (nan with fewer than 2 values)."""
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return (math.nan, math.nan)
    if len(values) < 2:
        return (values[0], math.nan)
    t = T95[min(len(values) - 1, len(T95)) - 1]
    return (statistics.fmean(values), t * statistics.stdev(values) / math.sqrt(len(values)))


def collect(client, parent: str, spec: StudySpec, trials: list[Trial]) -> list[dict[str, Any]]:
    """One row per trial: its grid cell, status, stability, final and best metric."""
    from gfssm.pipelines.study import TRIAL_TAG

    experiment_id = client.get_run(parent).info.experiment_id
    runs = {r.data.tags.get(TRIAL_TAG): r for r in child_runs(client, parent, [experiment_id])}
    pick = max if spec.mode == "max" else min
    rows = []
    for trial in trials:
        run = runs.get(trial.key)
        metrics = run.data.metrics if run else {}
        history = metric_history(client, run.info.run_id, spec.metric) if run else []
        finite = [v for _, v in history if math.isfinite(v)]
        row: dict[str, Any] = {
            "trial": trial.key,
            "contender": trial.contender,
            "parameters": trial.parameters,
            "length": trial.length,
            "lr": trial.lr,
            "seed": trial.seed,
            "status": run.info.status if run else "MISSING",
            "run_id": run.info.run_id if run else "",
            "final": metrics.get(spec.metric, math.nan),
            "best": pick(finite) if finite else math.nan,
        }
        row.update({k: metrics.get(k, math.nan) for k in (*STABILITY, *SPEED)})
        if spec.length_metric_prefix:
            pattern = re.compile(re.escape(spec.length_metric_prefix) + r"(\d+)$")
            for key, value in metrics.items():
                found = pattern.match(key)
                if found:
                    row[f"at_{found.group(1)}"] = value
        rows.append(row)
    return rows


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per (contender, length, lr) across seeds."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["status"] == "FINISHED":
            groups[(row["contender"], row["length"], row["lr"])].append(row)
    out = []
    for (contender, length, lr), members in groups.items():
        diverged = sum(1 for r in members if r["diverged"] == 1.0)
        low, high = wilson(diverged, len(members))
        final, final_ci = mean_ci([r["final"] for r in members])
        best, best_ci = mean_ci([r["best"] for r in members])
        steps = [r["diverged_step"] for r in members if r["diverged"] == 1.0]
        line = {
            "contender": contender,
            "parameters": members[0]["parameters"],
            "length": length,
            "lr": lr,
            "runs": len(members),
            "diverged": diverged,
            "divergence_rate": diverged / len(members),
            "rate_ci_low": low,
            "rate_ci_high": high,
            "median_diverged_step": statistics.median(steps) if steps else math.nan,
            "final_mean": final,
            "final_ci95": final_ci,
            "best_mean": best,
            "best_ci95": best_ci,
            "max_grad_norm_median": statistics.median(r["max_grad_norm"] for r in members),
            "max_loss_spike_median": statistics.median(r["max_loss_spike"] for r in members),
            "tokens_per_s": statistics.fmean(r["tokens_per_s"] for r in members),
            "peak_memory_mb": max(r["peak_memory_mb"] for r in members),
        }
        for key in sorted({k for r in members for k in r if k.startswith("at_")}):
            line[key] = mean_ci([r.get(key, math.nan) for r in members])[0]
        out.append(line)
    return out


def _fmt(value: float, digits: int = 3) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}g}"


def markdown(spec: StudySpec, summary: list[dict[str, Any]], failed: int) -> str:
    lengths = sorted({k for line in summary for k in line if k.startswith("at_")}, key=_len_of)
    head = [
        "contender", "params", "L", "lr", "runs", "diverged (95% CI)", "diverged at",
        f"final {spec.metric} ±95%", "best", "max grad norm", "max loss spike", "tokens/s",
        *[f"@{_len_of(k)}" for k in lengths],
    ]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summary:
        rate = (
            f"{s['diverged']}/{s['runs']} [{_fmt(s['rate_ci_low'], 2)}, "
            f"{_fmt(s['rate_ci_high'], 2)}]"
        )
        cells = [
            s["contender"], f"{s['parameters']:,}", str(s["length"] or "-"), f"{s['lr']:g}",
            str(s["runs"]), rate, _fmt(s["median_diverged_step"], 4),
            f"{_fmt(s['final_mean'])} ± {_fmt(s['final_ci95'], 2)}", _fmt(s["best_mean"]),
            _fmt(s["max_grad_norm_median"]), _fmt(s["max_loss_spike_median"]),
            f"{s['tokens_per_s']:,.0f}" if math.isfinite(s["tokens_per_s"]) else "-", *[_fmt(s.get(k, math.nan)) for k in lengths],
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    if failed:
        lines.append(f"\n{failed} trial(s) failed or are missing: see trials.csv.")
    return "\n".join(lines) + "\n"


def _len_of(key: str) -> int:
    return int(key.split("_", 1)[1])


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    fields = sorted({k for r in rows for k in r}, key=lambda k: (k.startswith("at_"), k))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def write_report(client, parent: str, spec: StudySpec, trials: list[Trial], out: Path):
    """Tables and plots into ``out`` and the parent run's ``study/`` artifacts."""
    from gfssm.pipelines.study_plots import plot_all

    out.mkdir(parents=True, exist_ok=True)
    rows = collect(client, parent, spec, trials)
    summary = summarise(rows)
    failed = sum(1 for r in rows if r["status"] != "FINISHED")
    paths = {"markdown": out / "summary.md", "csv": out / "summary.csv"}
    paths["markdown"].write_text(markdown(spec, summary, failed))
    _write_csv(paths["csv"], summary)
    _write_csv(out / "trials.csv", rows)
    curves = {
        r["trial"]: metric_history(client, r["run_id"], "train_loss") for r in rows if r["run_id"]
    }
    paths.update(plot_all(spec, rows, summary, curves, out))
    client.log_artifacts(parent, str(out), "study")
    return paths
