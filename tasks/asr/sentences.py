"""Real English sentences for the synthetic corpus, from fortune files or plain text.

A fortune file holds entries separated by lines of ``%``; other files are read as text.
Entries are split into sentences; attributions (``-- Author``), quotes' formatting and
non-prose (code, tables, ASCII art) are dropped, and only sentences whose every word can be
spoken unambiguously are kept: after spelling out numbers and symbols, only letters and
apostrophes may remain, and no word may look like an acronym (a synthesiser would spell it
out while the transcript has one word).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from gfssm.tasks.asr.text import normalise_text, spell_out

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
_ATTRIBUTION = re.compile(r"^\s*(--|\u2014)")
_ALLOWED = re.compile(r"^[A-Za-z0-9 ,.;:!?'\"()\-$%&]+$")
_WORD = re.compile(r"[A-Za-z']+")
_VOWELS = set("aeiouyAEIOUY")


@dataclass(frozen=True)
class Sentence:
    """``spoken``: what the synthesiser reads (numbers spelled out, punctuation kept for
    prosody); ``text``: the normalised transcript."""

    spoken: str
    text: str


def read_entries(path: str | Path) -> Iterator[str]:
    """Entries of a fortune file (``%`` separators) or paragraphs of a text file."""
    content = Path(path).read_text(encoding="utf-8", errors="replace")
    if re.search(r"^%\s*$", content, re.MULTILINE):
        parts = re.split(r"^%\s*$", content, flags=re.MULTILINE)
    else:
        parts = re.split(r"\n\s*\n", content)
    for part in parts:
        lines = [ln for ln in part.splitlines() if ln.strip() and not _ATTRIBUTION.match(ln)]
        # Indented or tab-separated lines are verse, code or tables: keep only prose entries.
        if lines and not any(ln.startswith(("\t", "    ")) for ln in lines):
            yield " ".join(ln.strip() for ln in lines)


def split_sentences(entry: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(entry) if s.strip()]


def looks_like_acronym(word: str) -> bool:
    bare = word.strip("'")
    if len(bare) >= 2 and bare.isupper():
        return bare not in {"I", "A", "OK"} and not (len(bare) > 4 and set(bare) & _VOWELS)
    return len(bare) >= 2 and not set(bare) & _VOWELS


def speakable(sentence: str, *, min_words: int = 3, max_words: int = 24) -> Sentence | None:
    """The sentence as spoken text and transcript, or None if it cannot be read
    unambiguously or has too few / too many words."""
    if not _ALLOWED.match(sentence):
        return None
    if any(looks_like_acronym(w) for w in _WORD.findall(sentence)):
        return None
    spoken = spell_out(sentence)
    text = normalise_text(spoken)
    if not min_words <= len(text.split()) <= max_words:
        return None
    # The synthesiser reads lowercase (so shouting is not spelled out); punctuation stays.
    return Sentence(spoken=spoken.lower(), text=text)


def text_files(paths: Iterable[str | Path]) -> list[Path]:
    """The files named, with each folder standing for its fortune files (no suffix; their
    ``.dat`` indexes are skipped) and ``.txt`` files."""
    out = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in ("", ".txt"))
            if not found:
                raise FileNotFoundError(f"{path}: no fortune or .txt files in this folder")
            out.extend(found)
        elif path.is_file():
            if path.suffix == ".dat" and path.with_suffix("").is_file():
                continue  # strfile's binary index of the fortune file beside it (a shell glob)
            out.append(path)
        else:
            raise FileNotFoundError(f"{path}: sentence file not found")
    return out


def collect_sentences(
    paths: Iterable[str | Path], *, min_words: int = 3, max_words: int = 24
) -> list[Sentence]:
    """Unique speakable sentences of all files (folders: their fortune and .txt files)."""
    seen: set[str] = set()
    out = []
    for path in text_files(paths):
        for entry in read_entries(path):
            for raw in split_sentences(entry):
                sentence = speakable(raw, min_words=min_words, max_words=max_words)
                if sentence is not None and sentence.text not in seen:
                    seen.add(sentence.text)
                    out.append(sentence)
    return out
