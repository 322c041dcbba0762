"""Training stability, measured the same way in every run: did the loss diverge, when, and
how large were the worst gradient norm and loss spike.

A run has *diverged* at the first step where the loss or the gradient norm is not finite, or
where, after warmup, the smoothed loss rises more than 5% above the loss the run started from
(the mean of its first steps): it has then lost everything it learned. The smoothing (an
exponential moving average over about ten steps, starting from that mean) keeps one noisy
batch from counting, and the 5% margin keeps a run whose loss has not moved yet (synthetic
tasks often sit at their starting loss before they learn) from counting.
A *loss spike* is the rise of the smoothed loss above the lowest it had reached before.
"""

from __future__ import annotations

import math
import resource
import sys
import time
from dataclasses import dataclass

import torch

EMA_WEIGHT = 0.1  # about ten steps of memory
START_STEPS = 5  # steps averaged into the starting loss
MARGIN = 0.05  # relative rise above the starting loss that counts as divergence


@dataclass
class StabilityMonitor:
    """Fed every optimizer step (the same on every rank: losses and gradient norms are
    all-reduced); :meth:`metrics` is what runs log."""

    warmup_steps: int
    started: float = 0.0
    tokens: float = 0.0
    start_loss: float = math.nan
    ema: float = math.nan
    lowest_ema: float = math.inf
    max_grad_norm: float = 0.0
    max_loss_spike: float = 0.0
    diverged_step: int | None = None
    why: str = ""
    _first: int = 0
    _first_sum: float = 0.0

    def __post_init__(self) -> None:
        self.started = time.perf_counter()

    @property
    def diverged(self) -> bool:
        return self.diverged_step is not None

    def update(self, step: int, loss: float, grad_norm: float, tokens: float) -> bool:
        """Record one step; True when this step is the one the run diverged at."""
        self.tokens += tokens
        if self.diverged:
            return False
        if not math.isfinite(loss) or not math.isfinite(grad_norm):
            return self._diverge(step, "non-finite loss or gradient")
        self.max_grad_norm = max(self.max_grad_norm, grad_norm)
        if self._first < START_STEPS:
            self._first += 1
            self._first_sum += loss
            self.start_loss = self.ema = self._first_sum / self._first
            return False
        self.ema = (1 - EMA_WEIGHT) * self.ema + EMA_WEIGHT * loss
        if self.lowest_ema < math.inf:
            self.max_loss_spike = max(self.max_loss_spike, self.ema - self.lowest_ema)
        self.lowest_ema = min(self.lowest_ema, self.ema)
        limit = self.start_loss + MARGIN * abs(self.start_loss)
        if step > self.warmup_steps and self.ema > limit:
            return self._diverge(
                step, f"smoothed loss {self.ema:.3g} above its start {self.start_loss:.3g}"
            )
        return False

    def _diverge(self, step: int, why: str) -> bool:
        self.diverged_step, self.why = step, why
        return True

    def state(self) -> dict[str, float | int | str | None]:
        """Plain values for a checkpoint, so a resumed run keeps its starting loss, extremes
        and throughput (and a divergence found before the checkpoint)."""
        values = {k: v for k, v in self.__dict__.items() if k != "started"}
        values["elapsed"] = time.perf_counter() - self.started
        return values

    @classmethod
    def restored(cls, values: dict) -> StabilityMonitor:
        values = dict(values)
        elapsed = float(values.pop("elapsed", 0.0))
        monitor = cls(**values)
        monitor.started = time.perf_counter() - elapsed
        return monitor

    def metrics(self) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        return {
            "diverged": 1.0 if self.diverged else 0.0,
            "diverged_step": float(self.diverged_step) if self.diverged else -1.0,
            "max_grad_norm": self.max_grad_norm,
            "max_loss_spike": self.max_loss_spike,
            "tokens_per_s": self.tokens / elapsed,
            "peak_memory_mb": peak_memory_mb(),
        }


def peak_memory_mb() -> float:
    """The peak memory of this process: the CUDA allocator's when a GPU was used, else the
    process's peak resident set (which includes Python and the libraries)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10
