"""The order-k Markov baseline: P(base | previous k bases), smoothed.

Smoothing is hierarchical (interpolated Dirichlet): every order backs off to the one below,

    P_0(x)   = (n(x) + alpha / 4) / (n + alpha)
    P_j(x|c) = (n(c, x) + alpha * P_{j-1}(x | c')) / (n(c) + alpha)

where ``c'`` drops the oldest base of ``c``. Contexts never reach across an N or the start
of a window, so the baseline sees exactly the context the model sees. Counts come from
the training regions only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gfssm.tasks.dna.tokens import N_BASES

MAX_ORDER = 16
DENSE_LIMIT = 4**10  # context*4 + base codes up to this use dense arrays, sparse above


class CountTable:
    """Counts of (context, base) codes for one order; dense or sorted-sparse."""

    def __init__(self, n_codes: int) -> None:
        self.n_codes = n_codes
        self.dense = np.zeros(n_codes, np.int64) if n_codes <= DENSE_LIMIT else None
        self.keys = np.zeros(0, np.int64)
        self.values = np.zeros(0, np.int64)

    def add(self, codes: np.ndarray) -> None:
        if self.dense is not None:
            self.dense += np.bincount(codes, minlength=self.n_codes)
            return
        keys, counts = np.unique(codes, return_counts=True)
        all_keys = np.concatenate([self.keys, keys])
        all_counts = np.concatenate([self.values, counts])
        self.keys, inverse = np.unique(all_keys, return_inverse=True)
        self.values = np.bincount(inverse, weights=all_counts).astype(np.int64)

    def lookup(self, codes: np.ndarray) -> np.ndarray:
        if self.dense is not None:
            return self.dense[codes]
        if self.keys.size == 0:
            return np.zeros(codes.shape, np.int64)
        idx = np.clip(np.searchsorted(self.keys, codes), 0, self.keys.size - 1)
        return np.where(self.keys[idx] == codes, self.values[idx], 0)


def context_lengths(tokens: np.ndarray) -> np.ndarray:
    """(L,) number of consecutive A/C/G/T bases right before each position."""
    is_base = tokens < N_BASES
    idx = np.arange(tokens.size)
    # position of the last non-base at or before i-1, -1 if none
    last_break = np.where(~is_base, idx, -1)
    last_break = np.maximum.accumulate(last_break)
    before = np.concatenate([[-1], last_break[:-1]])
    return idx - before - 1


@dataclass
class MarkovScores:
    """Per scored position: the true base, its log-probability (nats), the argmax base."""

    target: np.ndarray
    logprob: np.ndarray
    predicted: np.ndarray


class MarkovModel:
    """Order-``order`` Markov chain over A/C/G/T with hierarchical smoothing ``alpha``."""

    def __init__(self, order: int, alpha: float = 1.0) -> None:
        if not 0 <= order <= MAX_ORDER:
            raise ValueError(f"markov_order={order}: expected 0..{MAX_ORDER}")
        if alpha <= 0:
            raise ValueError(f"markov_alpha={alpha}: expected > 0")
        self.order = order
        self.alpha = alpha
        self.tables = [CountTable(N_BASES ** (j + 1)) for j in range(order + 1)]
        self.bases_seen = 0

    def _orders(self, tokens: np.ndarray):
        """Yield ``(j, codes)`` for j = 0..order, where codes (L,) is ``context_j * 4 +
        base`` (the j previous bases, nearest in the lowest digit after the base); values
        are meaningless where fewer than j bases precede (callers mask those)."""
        t = np.where(tokens < N_BASES, tokens, 0).astype(np.int64)
        code = t.copy()
        for j in range(self.order + 1):
            if 0 < j < t.size:
                code[j:] += t[:-j] * (N_BASES**j)
            yield j, code

    def fit(self, tokens: np.ndarray, first: int = 0) -> MarkovModel:
        """Add the counts of a contiguous stretch of tokens (L,); positions before
        ``first`` serve only as context (overlap with the previous stretch)."""
        tokens = np.asarray(tokens, np.int64)
        if tokens.size == 0:
            return self
        is_target = tokens < N_BASES
        is_target[:first] = False
        ctx = context_lengths(tokens)
        self.bases_seen += int(is_target.sum())
        for j, codes in self._orders(tokens):
            self.tables[j].add(codes[is_target & (ctx >= j)])
        return self

    def base_probs(self, tokens: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """(len(positions), 4) probabilities of each base at ``positions`` of ``tokens``,
        from at most ``order`` preceding bases inside ``tokens``, refined order by order."""
        tokens = np.asarray(tokens, np.int64)
        ctx = context_lengths(tokens)[positions]
        probs = np.full((positions.size, N_BASES), 1.0 / N_BASES)
        for j, all_codes in self._orders(tokens):
            codes = all_codes[positions]
            context_code = codes - codes % N_BASES
            table = self.tables[j]
            counts = np.stack([table.lookup(context_code + b) for b in range(N_BASES)], axis=1)
            total = counts.sum(axis=1, keepdims=True)
            refined = (counts + self.alpha * probs) / (total + self.alpha)
            probs = np.where((ctx >= j)[:, None], refined, probs)
        return probs

    def score(self, tokens: np.ndarray, first: int = 1) -> MarkovScores:
        """Scores of positions ``first..L-1`` of ``tokens`` whose base is A/C/G/T, each from
        at most ``order`` preceding bases inside ``tokens``; arrays over those positions."""
        tokens = np.asarray(tokens, np.int64)
        positions = np.flatnonzero(tokens < N_BASES)
        positions = positions[positions >= first]
        probs = self.base_probs(tokens, positions)
        true = tokens[positions]
        return MarkovScores(
            target=true,
            logprob=np.log(probs[np.arange(positions.size), true]),
            predicted=probs.argmax(axis=1),
        )
