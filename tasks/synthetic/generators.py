"""Synthetic long-context problems, generated on the fly and reproducible from a seed.

Every generator returns ``(inputs, targets)``: int64 arrays of shape (b, L). ``targets[i, t]``
is the token the model must predict at position ``t`` of row ``i`` (its causal output there),
or :data:`IGNORE` where nothing is asked; accuracy is measured on the asked positions only.

- ``mqar``: multi-query associative recall (the Zoology setup): key-value pairs
  ``k1 v1 ... kn vn`` (keys from the lower half of the vocabulary, values from the upper
  half), then a stretch of filler where every key comes back once, in random order and at a
  random place, followed by its value; the model must predict the value when it sees the key.
  The number of pairs grows with the length (``pairs_per_token``).
- ``induction``: random tokens with a trigger token placed once, followed by a random token;
  the last position holds the trigger again and must predict that token.
- ``selective_copy``: ``copy_tokens`` data tokens scattered in order among noise tokens, then
  as many copy markers; at each marker the model must produce the next data token.
- ``passkey``: a repeating filler text with ``KEY d1..dk KEY`` hidden at a random place; at the
  end ``QUERY d1..dk`` is asked digit by digit (the model sees the digits it already gave).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE = -100
KINDS = ("mqar", "induction", "selective_copy", "passkey")

# Special tokens shared by the small-vocabulary problems.
FILLER, TRIGGER, MARKER = 0, 1, 2  # noise / filler, trigger or key mark, copy marker or query
FIRST_FREE = 3
DIGITS = 10


@dataclass(frozen=True)
class Problem:
    """The sizes of one problem kind; ``vocab_size`` counts every token id it may emit."""

    kind: str
    vocab_size: int
    pairs_per_token: float = 1 / 16
    copy_tokens: int = 16
    passkey_digits: int = 5

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r}: expected one of {KINDS}")
        least = {"mqar": 8, "induction": FIRST_FREE + 2, "selective_copy": FIRST_FREE + 2}
        least["passkey"] = FIRST_FREE + DIGITS + 1
        if self.vocab_size < least[self.kind]:
            raise ValueError(
                f"vocab_size {self.vocab_size}: {self.kind} needs at least {least[self.kind]}"
            )

    def min_length(self) -> int:
        """The shortest sequence this problem fits in."""
        return {
            "mqar": 16,
            "induction": 8,
            "selective_copy": 2 * self.copy_tokens + 1,
            "passkey": 4 * self.passkey_digits + 8,
        }[self.kind]

    def pairs(self, length: int) -> int:
        """MQAR key-value pairs at ``length`` (a quarter of the sequence at most)."""
        return max(1, min(int(length * self.pairs_per_token), length // 4))

    def generate(self, rng: np.random.Generator, batch: int, length: int):
        """(inputs, targets), each (b, L) int64."""
        if length < self.min_length():
            raise ValueError(f"length {length}: {self.kind} needs at least {self.min_length()}")
        make = {
            "mqar": _mqar,
            "induction": _induction,
            "selective_copy": _selective_copy,
            "passkey": _passkey,
        }[self.kind]
        inputs = np.zeros((batch, length), dtype=np.int64)
        targets = np.full((batch, length), IGNORE, dtype=np.int64)
        for row in range(batch):
            make(self, rng, length, inputs[row], targets[row])
        return inputs, targets


def _mqar(p: Problem, rng, length: int, x: np.ndarray, y: np.ndarray) -> None:
    n, half = p.pairs(length), p.vocab_size // 2
    keys = rng.choice(np.arange(1, half), size=n, replace=False)
    values = rng.integers(half, p.vocab_size, size=n)
    x[0 : 2 * n : 2], x[1 : 2 * n : 2] = keys, values
    # Each query takes two slots (key, then its value as the next input); slots are the even
    # offsets of the filler stretch, chosen at random.
    slots = (length - 2 * n) // 2
    chosen = np.sort(rng.choice(slots, size=n, replace=False))
    order = rng.permutation(n)
    where = 2 * n + 2 * chosen
    x[where], x[where + 1] = keys[order], values[order]
    y[where] = values[order]


def _induction(p: Problem, rng, length: int, x: np.ndarray, y: np.ndarray) -> None:
    x[:] = rng.integers(FIRST_FREE, p.vocab_size, size=length)
    at = int(rng.integers(0, length - 3))
    x[at] = TRIGGER
    answer = x[at + 1]
    x[-1] = TRIGGER
    y[-1] = answer


def _selective_copy(p: Problem, rng, length: int, x: np.ndarray, y: np.ndarray) -> None:
    k = p.copy_tokens
    data = rng.integers(FIRST_FREE, p.vocab_size, size=k)
    spots = np.sort(rng.choice(length - k, size=k, replace=False))
    x[: length - k] = FILLER
    x[spots] = data
    x[length - k :] = MARKER
    y[length - k :] = data


def _passkey(p: Problem, rng, length: int, x: np.ndarray, y: np.ndarray) -> None:
    k = p.passkey_digits
    digits = rng.integers(0, DIGITS, size=k) + FIRST_FREE
    # The filler repeats one short "sentence" (drawn per example) like the haystack of the
    # passkey test; it never uses the digit or special tokens.
    sentence = rng.integers(FIRST_FREE + DIGITS, p.vocab_size, size=int(rng.integers(5, 12)))
    x[:] = np.resize(sentence, length)
    tail = length - (k + 1)
    at = int(rng.integers(0, tail - (k + 2) + 1))
    x[at] = TRIGGER
    x[at + 1 : at + 1 + k] = digits
    x[at + 1 + k] = TRIGGER
    x[tail] = MARKER
    x[tail + 1 :] = digits
    # At the query and at each digit given so far, the next digit is asked.
    y[tail : tail + k] = digits


def seeded(*words: int) -> np.random.Generator:
    """A generator for a tuple of non-negative ints (seed, stream, rank, step, ...)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(list(words))))
