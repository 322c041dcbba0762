"""A study's plots: divergence rate against learning rate, the metric against evaluation
length, and training loss curves, one line per contender."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from gfssm.pipelines.study_spec import StudySpec


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on clusters
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, axes, path: Path) -> Path:
    """One legend (the first panel's), tight layout, the PNG written, the figure freed."""
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _best_lr(summary: list[dict[str, Any]], contender: str, length, mode: str) -> float | None:
    lines = [
        s
        for s in summary
        if s["contender"] == contender and s["length"] == length and math.isfinite(s["final_mean"])
    ]
    if not lines:
        return None
    pick = max if mode == "max" else min
    return pick(lines, key=lambda s: s["final_mean"])["lr"]


def plot_divergence(summary, out: Path) -> Path:
    plt = _pyplot()
    lengths = sorted({s["length"] or 0 for s in summary})
    fig, axes = plt.subplots(1, len(lengths), figsize=(5 * len(lengths), 4), squeeze=False)
    for ax, length in zip(axes[0], lengths):
        by_contender = defaultdict(list)
        for s in summary:
            if (s["length"] or 0) == length:
                by_contender[s["contender"]].append(s)
        for contender, lines in by_contender.items():
            lines.sort(key=lambda s: s["lr"])
            ax.plot(
                [s["lr"] for s in lines],
                [s["divergence_rate"] for s in lines],
                marker="o",
                label=contender,
            )
        ax.set_xscale("log")
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("peak learning rate")
        ax.set_ylabel("divergence rate across seeds")
        ax.set_title(f"train length {length}" if length else "divergence")
        ax.grid(alpha=0.3)
    return _save(plt, fig, axes, out / "divergence_vs_lr.png")


def plot_lengths(spec: StudySpec, summary, out: Path) -> Path | None:
    """The metric at each evaluation length, every contender at its best learning rate."""
    keys = sorted({k for s in summary for k in s if k.startswith("at_")}, key=lambda k: int(k[3:]))
    if not keys:
        return None
    plt = _pyplot()
    lengths = sorted({s["length"] or 0 for s in summary})
    fig, axes = plt.subplots(1, len(lengths), figsize=(5 * len(lengths), 4), squeeze=False)
    for ax, length in zip(axes[0], lengths):
        for contender in dict.fromkeys(s["contender"] for s in summary):
            lr = _best_lr(summary, contender, length or None, spec.mode)
            line = next(
                (
                    s
                    for s in summary
                    if s["contender"] == contender
                    and (s["length"] or 0) == length
                    and s["lr"] == lr
                ),
                None,
            )
            if line is None:
                continue
            present = [k for k in keys if k in line and math.isfinite(line[k])]
            ax.plot(
                [int(k[3:]) for k in present],
                [line[k] for k in present],
                marker="o",
                label=f"{contender} (lr {lr:g})",
            )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("evaluation length (tokens)")
        ax.set_ylabel(str(spec.length_metric_prefix).rstrip("_L"))
        ax.set_title(
            f"trained at length {length}" if length else f"{spec.name}: best lr per contender"
        )
        ax.grid(alpha=0.3)
    return _save(plt, fig, axes, out / "metric_vs_length.png")


def plot_losses(rows, curves, out: Path) -> Path:
    """Training loss of every trial, one panel per learning rate (seeds drawn thin)."""
    plt = _pyplot()
    lrs = sorted({r["lr"] for r in rows})
    fig, axes = plt.subplots(1, len(lrs), figsize=(4.5 * len(lrs), 3.8), squeeze=False)
    colours = {}
    for ax, lr in zip(axes[0], lrs):
        for row in rows:
            curve = curves.get(row["trial"]) or []
            if row["lr"] != lr or not curve:
                continue
            colour = colours.setdefault(row["contender"], f"C{len(colours) % 10}")
            label = row["contender"] if row["seed"] == min(r["seed"] for r in rows) else None
            ax.plot([s for s, _ in curve], [v for _, v in curve], color=colour, lw=0.8, label=label)
        ax.set_title(f"lr {lr:g}")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    return _save(plt, fig, axes, out / "loss_curves.png")


def plot_all(spec: StudySpec, rows, summary, curves, out: Path) -> dict[str, Path]:
    if not summary:  # no finished trial: nothing to draw
        return {}
    paths = {"divergence": plot_divergence(summary, out), "losses": plot_losses(rows, curves, out)}
    lengths = plot_lengths(spec, summary, out)
    if lengths is not None:
        paths["lengths"] = lengths
    return paths
