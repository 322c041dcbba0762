"""What ``gfssm eval dna-vep`` reports: AUROCs, per-class counts and codon-position entropy.

The AUROC of a score separating a damaging class from synonymous changes is the chance
that a random synonymous change scores higher than a random damaging one (ties count one
half): 0.5 is chance, 1.0 is perfect ("more damaging scores lower").
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gfssm.tasks.dna.vep.effects import CLASSES, MISSENSE, STOP_GAINED, SYNONYMOUS

SCORERS = ("model", "markov")
COMPARISONS = {"stop_gained_vs_synonymous": STOP_GAINED, "missense_vs_synonymous": MISSENSE}


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values``; tied values share the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # first index of each run of equal values, and where each value's run starts/ends
    starts = np.flatnonzero(np.concatenate([[True], sorted_values[1:] != sorted_values[:-1]]))
    ends = np.concatenate([starts[1:], [values.size]])
    run_rank = (starts + 1 + ends) / 2.0  # mean of ranks starts+1 .. ends
    run_of = np.repeat(np.arange(starts.size), ends - starts)
    ranks = np.empty(values.size)
    ranks[order] = run_rank[run_of]
    return ranks


def auroc(higher: np.ndarray, lower: np.ndarray) -> float:
    """P(a random value of ``higher`` > a random value of ``lower``) + P(tie) / 2, by
    ranks (Mann-Whitney U); NaN values are left out; NaN when either side is empty."""
    higher = np.asarray(higher, np.float64)
    lower = np.asarray(lower, np.float64)
    higher, lower = higher[np.isfinite(higher)], lower[np.isfinite(lower)]
    if higher.size == 0 or lower.size == 0:
        return math.nan
    ranks = average_ranks(np.concatenate([higher, lower]))
    u = ranks[: higher.size].sum() - higher.size * (higher.size + 1) / 2.0
    return float(u / (higher.size * lower.size))


def matched_auroc(
    higher: np.ndarray, lower: np.ndarray, higher_strata: np.ndarray, lower_strata: np.ndarray
) -> float:
    """:func:`auroc` counting only pairs from the same stratum (e.g. the same substitution
    at the same codon position), so that base composition alone cannot separate the
    classes: the per-stratum AUROCs averaged with weights n_higher * n_lower."""
    higher, lower = np.asarray(higher, np.float64), np.asarray(lower, np.float64)
    keep_h, keep_l = np.isfinite(higher), np.isfinite(lower)
    higher, higher_strata = higher[keep_h], np.asarray(higher_strata)[keep_h]
    lower, lower_strata = lower[keep_l], np.asarray(lower_strata)[keep_l]
    total, pairs = 0.0, 0
    for stratum in np.intersect1d(higher_strata, lower_strata):
        h, lo = higher[higher_strata == stratum], lower[lower_strata == stratum]
        total += auroc(h, lo) * h.size * lo.size
        pairs += h.size * lo.size
    return total / pairs if pairs else math.nan


def _mean(values: np.ndarray) -> float | None:
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else None


def _score_summary(
    effect: np.ndarray, scores: dict[str, np.ndarray], strata: np.ndarray | None, kind: str
) -> dict[str, Any]:
    """Mean score per class and the AUROCs of one kind of score ("" or "codon")."""
    synonymous = effect == SYNONYMOUS
    infix = f"_{kind}" if kind else ""
    out: dict[str, Any] = {
        f"mean{infix}_score": {
            s: {name: _mean(scores[s][effect == i]) for i, name in enumerate(CLASSES)}
            for s in SCORERS
        },
        f"auroc{infix}": {
            s: {
                name: auroc(scores[s][synonymous], scores[s][effect == cls])
                for name, cls in COMPARISONS.items()
            }
            for s in SCORERS
        },
    }
    if strata is not None:
        out[f"auroc{infix}_matched"] = {
            s: {
                name: matched_auroc(
                    scores[s][synonymous],
                    scores[s][effect == cls],
                    strata[synonymous],
                    strata[effect == cls],
                )
                for name, cls in COMPARISONS.items()
            }
            for s in SCORERS
        }
    return out


def summarize(
    effect: np.ndarray,
    scores: dict[str, np.ndarray],
    codon_pos: np.ndarray,
    entropy: dict[str, np.ndarray],
    strata: np.ndarray | None = None,
    codon_scores: dict[str, np.ndarray] | None = None,
    aa_scores: dict[str, np.ndarray] | None = None,
    uniform_aa_score: np.ndarray | None = None,
) -> dict[str, Any]:
    """The summary of a run: per-class counts and mean scores, the AUROCs of each scorer,
    and the mean entropy (bits) of each scorer at codon positions 1, 2, 3.

    ``effect``/``scores``/``strata``: one value per variant; ``codon_pos``/``entropy``: one
    per coding base of each CDS. With ``strata``, ``auroc_matched`` holds
    :func:`matched_auroc` too. ``codon_scores`` (the codon score of each scorer) get the
    same under ``mean_codon_score``, ``auroc_codon`` and ``auroc_codon_matched``, and
    ``aa_scores`` (the amino-acid score) under ``..._aa...``. ``uniform_aa_score`` (the
    amino-acid score of a scorer that finds every codon equally likely: what the genetic
    code alone gives) gets ``auroc_aa_uniform``."""
    counts = {name: int((effect == i).sum()) for i, name in enumerate(CLASSES)}
    out: dict[str, Any] = {"counts": counts, "variants": int(effect.size)}
    out.update(_score_summary(effect, scores, strata, ""))
    if codon_scores:
        out.update(_score_summary(effect, codon_scores, strata, "codon"))
    if aa_scores:
        out.update(_score_summary(effect, aa_scores, strata, "aa"))
    if uniform_aa_score is not None:
        synonymous = uniform_aa_score[effect == SYNONYMOUS]
        out["auroc_aa_uniform"] = {
            name: auroc(synonymous, uniform_aa_score[effect == cls])
            for name, cls in COMPARISONS.items()
        }
    out["entropy_bits"] = {
        s: {str(k): _mean(entropy[s][codon_pos == k]) for k in (1, 2, 3)} for s in SCORERS
    }
    out["coding_bases"] = int(codon_pos.size)
    return out


def summary_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """The summary's numbers under flat names for MLflow (``auroc_aa/model/
    missense_vs_synonymous``, ``counts/missense``, ``entropy_bits/model/3``); values that
    are missing (None, NaN) and anything not a number are left out."""
    out: dict[str, float] = {}

    def walk(value: Any, name: str) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(inner, f"{name}/{key}")
        elif (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ):
            out[name] = float(value)

    for key, value in summary.items():
        walk(value, key)
    return out


WIDTH = 52  # the label column of the printed table
KINDS = {"": "score", "_codon": "codon score", "_aa": "amino-acid score"}


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def summary_table(summary: dict[str, Any]) -> str:
    """The summary as a few aligned lines for the console."""
    lines = ["variants: " + ", ".join(f"{k} {v:,}" for k, v in summary["counts"].items())]
    lines.append(f"{'':{WIDTH}}{'model':>10}{'markov':>10}")
    for kind, name in KINDS.items():
        title = f"{name}: AUROC " if kind else "AUROC "
        if f"auroc{kind}" not in summary:
            continue
        for name in COMPARISONS:
            row = [summary[f"auroc{kind}"][s][name] for s in SCORERS]
            label = title + name.replace("_", " ")
            lines.append(f"{label:{WIDTH}}" + "".join(f"{_fmt(v):>10}" for v in row))
            if f"auroc{kind}_matched" in summary:
                row = [summary[f"auroc{kind}_matched"][s][name] for s in SCORERS]
                label = "  same substitution and codon pos"
                lines.append(f"{label:{WIDTH}}" + "".join(f"{_fmt(v):>10}" for v in row))
    for k in ("1", "2", "3"):
        row = [summary["entropy_bits"][s][k] for s in SCORERS]
        lines.append(
            f"{'mean entropy, codon position ' + k + ' (bits)':{WIDTH}}"
            + "".join(f"{_fmt(v, 3):>10}" for v in row)
        )
    for kind, score_name in KINDS.items():
        if f"mean{kind}_score" not in summary:
            continue
        for name in ("synonymous", "missense", "stop_gained"):
            row = [summary[f"mean{kind}_score"][s][name] for s in SCORERS]
            label = f"mean {score_name}, {name.replace('_', ' ')} (bits)"
            lines.append(f"{label:{WIDTH}}" + "".join(f"{_fmt(v, 3):>10}" for v in row))
    if "auroc_aa_uniform" in summary:
        lines.append(
            "amino-acid score with every codon equally likely (the genetic code alone): AUROC "
            + ", ".join(
                f"{name.replace('_', ' ')} {_fmt(value)}"
                for name, value in summary["auroc_aa_uniform"].items()
            )
        )
    return "\n".join(lines)
