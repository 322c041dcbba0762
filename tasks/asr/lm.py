"""Word lists and small n-gram language models for beam search, from normalised sentences.

KenLM reads ARPA files directly, so the models written here work with
:class:`~gfssm.tasks.asr.decoding.BeamSearchDecoder` without KenLM's own tools:

- a word model (``units="words"``) goes with a lexicon (:func:`write_lexicon`);
- a character model (``units="chars"``: letters, ``'`` and ``|`` between words) is used
  without a lexicon, so any spelling stays possible while likely letter sequences win.

Smoothing is interpolated absolute discounting with backoff weights that make every
history's distribution sum to one (for large corpora, build a model with ``lmplz``).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

from gfssm.tasks.asr.text import WORD_SEPARATOR, CharVocabulary

SENTENCE_START, SENTENCE_END, UNKNOWN = "<s>", "</s>", "<unk>"


def write_lexicon(
    words: Iterable[str], path: str | Path, vocabulary: CharVocabulary | None = None
) -> Path:
    """A flashlight lexicon: ``word w o r d |`` a line, for the words that the vocabulary
    can spell (sorted, unique)."""
    vocabulary = vocabulary or CharVocabulary()
    spellable = set(vocabulary.tokens) - {vocabulary.tokens[vocabulary.blank]}
    lines = [
        f"{word} {' '.join(word)} {WORD_SEPARATOR}"
        for word in sorted(set(words))
        if word and set(word) <= spellable
    ]
    path = Path(path)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def sentence_units(sentence: str, units: Literal["words", "chars"]) -> list[str]:
    """A normalised sentence as LM units: its words, or its characters with ``|`` for
    the spaces (the CTC tokens)."""
    if units == "words":
        return sentence.split()
    return [WORD_SEPARATOR if c == " " else c for c in " ".join(sentence.split())]


class NgramCounts:
    """Counts of every n-gram up to ``order`` of ``<s> units </s>`` sequences."""

    def __init__(self, sequences: Iterable[Sequence[str]], order: int) -> None:
        self.order = order
        self.counts: list[Counter[tuple[str, ...]]] = [Counter() for _ in range(order + 1)]
        for seq in sequences:
            units = [SENTENCE_START, *seq, SENTENCE_END]
            for n in range(1, order + 1):
                for i in range(len(units) - n + 1):
                    gram = tuple(units[i : i + n])
                    if gram != (SENTENCE_START,):
                        self.counts[n][gram] += 1
        self.followers: list[dict[tuple[str, ...], list[str]]] = [{} for _ in range(order + 1)]
        self.history_total: list[Counter[tuple[str, ...]]] = [Counter() for _ in range(order + 1)]
        for n in range(2, order + 1):
            for gram, c in self.counts[n].items():
                self.followers[n].setdefault(gram[:-1], []).append(gram[-1])
                self.history_total[n][gram[:-1]] += c


def write_arpa(
    sentences: Iterable[str],
    path: str | Path,
    *,
    order: int = 2,
    units: Literal["words", "chars"] = "words",
    discount: float = 0.5,
) -> Path:
    """An ``order``-gram ARPA model of normalised ``sentences``.

    Unigrams are add-one smoothed (with ``<unk>``). For a seen n-gram,
    P(w | h) = (c(h, w) - D) / c(h) + D * N(h) / c(h) * P(w | h'), h' the history without its
    first unit and N(h) the number of distinct units after h; an unseen one backs off:
    bow(h) * P(w | h'), with bow(h) making the distribution over all units sum to one."""
    if order < 1:
        raise ValueError(f"write_arpa: order={order} must be >= 1")
    counts = NgramCounts((sentence_units(s, units) for s in sentences), order)
    if not counts.counts[1]:
        raise ValueError("write_arpa: no sentences")
    vocab = sorted({g[0] for g in counts.counts[1]} | {UNKNOWN})
    total = sum(counts.counts[1].values()) + len(vocab)
    prob: dict[tuple[str, ...], float] = {(w,): (counts.counts[1][(w,)] + 1) / total for w in vocab}

    def p(gram: tuple[str, ...]) -> float:
        """P(last | rest) under the finished lower orders (backing off as ARPA does)."""
        if gram in prob:
            return prob[gram]
        if len(gram) == 1:
            return prob[(UNKNOWN,)]
        return backoff.get(gram[:-1], 1.0) * p(gram[1:])

    backoff: dict[tuple[str, ...], float] = {}
    for n in range(2, order + 1):
        for history, ws in counts.followers[n].items():
            c_h = counts.history_total[n][history]
            mass = discount * len(ws) / c_h
            for w in ws:
                gram = (*history, w)
                prob[gram] = (counts.counts[n][gram] - discount) / c_h + mass * p(gram[1:])
            # Seen units take 1 - mass + mass * P_lower(seen), unseen ones must share
            # mass * (1 - P_lower(seen)): the weight is exactly ``mass``. (Computing it as a
            # ratio of those two differences cancels to 0/0 when h is followed by nearly
            # every unit, as in character models.)
            backoff[history] = mass

    def fmt(value: float) -> str:
        return f"{math.log10(value):.6f}"

    by_order: dict[int, list[str]] = defaultdict(list)
    by_order[1].append(f"-99.000000\t{SENTENCE_START}\t{fmt(backoff.get((SENTENCE_START,), 1.0))}")
    for gram in sorted(prob, key=lambda g: (len(g), g)):
        line = f"{fmt(prob[gram])}\t{' '.join(gram)}"
        if gram in backoff and len(gram) < order:
            line += f"\t{fmt(backoff[gram])}"
        by_order[len(gram)].append(line)
    lines = ["\\data\\", *(f"ngram {n}={len(by_order[n])}" for n in range(1, order + 1)), ""]
    for n in range(1, order + 1):
        lines += [f"\\{n}-grams:", *by_order[n], ""]
    lines += ["\\end\\", ""]
    path = Path(path)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
