"""Word and character error rates, per utterance and over a whole set.

The overall rate is total edits over total reference length (not a mean of per-utterance
rates, which would weigh a two-word prompt like a long sentence). Characters include the
spaces between words. Texts are compared as given: normalise both sides first.
"""

from __future__ import annotations

from dataclasses import dataclass

import jiwer


@dataclass(frozen=True)
class ErrorCounts:
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    reference_length: int = 0

    @property
    def edits(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        """Edits per reference unit; an empty reference gives 0 if nothing was inserted,
        else inf (any output is all wrong)."""
        if self.reference_length == 0:
            return 0.0 if self.edits == 0 else float("inf")
        return self.edits / self.reference_length

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
            self.reference_length + other.reference_length,
        )


def _counts(output, reference_length: int) -> ErrorCounts:
    return ErrorCounts(output.substitutions, output.deletions, output.insertions, reference_length)


def word_errors(reference: str, hypothesis: str) -> ErrorCounts:
    ref_words = reference.split()
    if not ref_words:
        return ErrorCounts(insertions=len(hypothesis.split()))
    if not hypothesis.split():
        return ErrorCounts(deletions=len(ref_words), reference_length=len(ref_words))
    return _counts(jiwer.process_words(reference, hypothesis), len(ref_words))


def char_errors(reference: str, hypothesis: str) -> ErrorCounts:
    reference, hypothesis = " ".join(reference.split()), " ".join(hypothesis.split())
    if not reference:
        return ErrorCounts(insertions=len(hypothesis))
    if not hypothesis:
        return ErrorCounts(deletions=len(reference), reference_length=len(reference))
    return _counts(jiwer.process_characters(reference, hypothesis), len(reference))


@dataclass
class ErrorRates:
    """Accumulates word and character errors over a set of utterances."""

    words: ErrorCounts = ErrorCounts()
    chars: ErrorCounts = ErrorCounts()
    utterances: int = 0

    def add(self, reference: str, hypothesis: str) -> dict[str, float]:
        """Count one utterance; returns its own ``wer`` and ``cer``."""
        w, c = word_errors(reference, hypothesis), char_errors(reference, hypothesis)
        self.words, self.chars = self.words + w, self.chars + c
        self.utterances += 1
        return {"wer": w.rate, "cer": c.rate}

    def summary(self) -> dict[str, float]:
        return {
            "wer": self.words.rate,
            "cer": self.chars.rate,
            "utterances": float(self.utterances),
            "reference_words": float(self.words.reference_length),
            "reference_chars": float(self.chars.reference_length),
        }
