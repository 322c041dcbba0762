"""Next-base prediction: the loss and its metrics.

The model's distribution over the next base is the softmax of its logits restricted to
A, C, G, T, so bits per base are comparable with the Markov baseline (at most 2 bits for a
uniform guess). Positions whose next base is N are not scored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gfssm.tasks.dna.tokens import N_BASES

LN2 = math.log(2.0)


def base_log_probs(logits: torch.Tensor) -> torch.Tensor:
    """logits (b, L, V) -> log-probabilities (b, L, 4) over A, C, G, T, in float32."""
    return F.log_softmax(logits[..., :N_BASES].float(), dim=-1)


@dataclass
class NextBaseStats:
    """Sums over the scored positions of a batch."""

    nll: torch.Tensor  # scalar, nats, differentiable, weighted
    weight: torch.Tensor  # scalar, sum of loss weights
    nll_sum: float  # unweighted, nats
    count: int
    correct: int

    @property
    def loss(self) -> torch.Tensor:
        """Weighted mean NLL (nats) to back-propagate."""
        return self.nll / self.weight.clamp_min(1e-12)


def next_base_stats(
    logits: torch.Tensor, labels: torch.Tensor, loss_weight: torch.Tensor | None = None
) -> NextBaseStats:
    """logits (b, L, V), labels (b, L) with -100 at unscored positions, loss_weight (b, L)."""
    logp = base_log_probs(logits)
    valid = labels >= 0
    safe = labels.clamp_min(0)
    nll = -logp.gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    if loss_weight is None:
        loss_weight = valid.float()
    weight = loss_weight * valid
    with torch.no_grad():
        nll_sum = float((nll * valid).sum())
        correct = int(((logp.argmax(-1) == labels) & valid).sum())
    return NextBaseStats(
        nll=(nll * weight).sum(),
        weight=weight.sum(),
        nll_sum=nll_sum,
        count=int(valid.sum()),
        correct=correct,
    )
