"""Word lists and small word language models for beam search, from normalised sentences.

KenLM reads ARPA files directly, so a bigram model written here (absolute discounting with
backoff to unigrams) works with :class:`~gfssm.tasks.asr.decoding.BeamSearchDecoder`
without KenLM's own tools. For large corpora, build a bigger model with ``lmplz``.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

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


def write_arpa(sentences: Iterable[str], path: str | Path, *, discount: float = 0.5) -> Path:
    """A bigram ARPA model of normalised ``sentences`` (words split on spaces).

    P(w | v) = (c(v, w) - D) / c(v) for seen pairs; the mass taken off goes to
    alpha(v) * P(w) for the rest, with alpha chosen so that each row sums to one. Unigrams
    are add-one smoothed over the words plus ``</s>`` and ``<unk>``."""
    unigrams: Counter[str] = Counter()
    bigrams: Counter[tuple[str, str]] = Counter()
    for sentence in sentences:
        words = [SENTENCE_START, *sentence.split(), SENTENCE_END]
        unigrams.update(words[1:])
        bigrams.update(itertools.pairwise(words))
    if not bigrams:
        raise ValueError("write_arpa: no sentences")
    vocab = sorted(set(unigrams) | {UNKNOWN})
    total = sum(unigrams.values()) + len(vocab)
    p_uni = {w: (unigrams[w] + 1) / total for w in vocab}
    history_counts: Counter[str] = Counter()
    followers: dict[str, list[str]] = {}
    for (v, w), c in bigrams.items():
        history_counts[v] += c
        followers.setdefault(v, []).append(w)
    p_bi = {(v, w): (c - discount) / history_counts[v] for (v, w), c in bigrams.items()}
    backoff = {}
    for v, ws in followers.items():
        left = 1.0 - sum(p_bi[(v, w)] for w in ws)
        unseen = 1.0 - sum(p_uni.get(w, 0.0) for w in ws)
        backoff[v] = left / unseen if unseen > 0 else 1.0

    def log10(p: float) -> str:
        return f"{math.log10(p):.6f}"

    lines = ["\\data\\", f"ngram 1={len(vocab) + 1}", f"ngram 2={len(p_bi)}", "", "\\1-grams:"]
    lines.append(f"-99.000000\t{SENTENCE_START}\t{log10(backoff.get(SENTENCE_START, 1.0))}")
    for w in vocab:
        bo = backoff.get(w)
        lines.append(f"{log10(p_uni[w])}\t{w}" + (f"\t{log10(bo)}" if bo else ""))
    lines += ["", "\\2-grams:"]
    lines += [f"{log10(p)}\t{v} {w}" for (v, w), p in sorted(p_bi.items())]
    lines += ["", "\\end\\", ""]
    path = Path(path)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
