"""Text for a character CTC vocabulary: normalisation and the token table.

Transcripts from every source (manifests, LibriSpeech, Common Voice, telephony prompts,
the synthetic corpus) pass through :func:`normalise_text`, so that a model is trained and
scored on one alphabet: lowercase ``a``-``z``, the apostrophe, and the space. Digits are
spelled out with ``num2words`` (English), symbols that are read aloud become words, and
everything else is dropped.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from num2words import num2words

BLANK = "-"
WORD_SEPARATOR = "|"
LETTERS = "abcdefghijklmnopqrstuvwxyz"

# Abbreviations as they are read aloud (matched case-insensitively with their period).
ABBREVIATIONS = {
    "mr.": "mister",
    "mrs.": "missus",
    "dr.": "doctor",
    "jr.": "junior",
    "sr.": "senior",
    "vs.": "versus",
    "etc.": "et cetera",
    "no.": "number",
}
SYMBOL_WORDS = {"&": " and ", "%": " percent ", "+": " plus ", "@": " at ", "=": " equals "}

_DIGITS = r"(\d{1,3}(?:,\d{3})+|\d+)(?!\d)(\.\d+)?"
_NUMBER = re.compile(r"(?<![\d.])" + _DIGITS + r"(st|nd|rd|th)?(?![a-z\d])", re.IGNORECASE)
_BARE_NUMBER = re.compile(r"(?<![\d.])" + _DIGITS)
_CURRENCY = re.compile(r"\$\s?" + _DIGITS)
_SPACE_BEFORE_PUNCTUATION = re.compile(r"\s+([,.;:!?])")
_ABBREVIATION = re.compile(
    r"\b(" + "|".join(re.escape(a[:-1]) for a in ABBREVIATIONS) + r")\.", re.IGNORECASE
)
_NOT_IN_ALPHABET = re.compile(r"[^a-z' ]+")
_SPACES = re.compile(r"\s+")
_LOOSE_APOSTROPHE = re.compile(r"(?<![a-z])'|'(?![a-z])")


def number_to_words(match: re.Match) -> str:
    """A number as it is read: ``1,000`` -> one thousand, ``3.5`` -> three point five,
    ``21st`` -> twenty-first, a bare year-like ``1984`` -> nineteen eighty-four."""
    whole, fraction, ordinal = match.group(1), match.group(2), match.group(3)
    value = int(whole.replace(",", ""))
    if ordinal and not fraction:
        return " " + num2words(value, to="ordinal", lang="en") + " "
    if fraction:
        digits = " ".join(num2words(int(d), lang="en") for d in fraction[1:])
        return f" {num2words(value, lang='en')} point {digits} "
    if "," not in whole and len(whole) == 4 and 1100 <= value <= 1999:
        return " " + num2words(value, to="year", lang="en") + " "
    return " " + num2words(value, lang="en") + " "


def spell_out(text: str) -> str:
    """Expand what is read aloud as words (numbers, currency, ``&``, ``%``, ``Mr.``) but keep
    case and punctuation: the form given to a speech synthesiser."""
    text = unicodedata.normalize("NFKC", text)
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    text = _CURRENCY.sub(lambda m: f" {m.group(1)}{m.group(2) or ''} dollars ", text)
    text = _ABBREVIATION.sub(lambda m: ABBREVIATIONS[m.group(1).lower() + "."], text)
    for symbol, word in SYMBOL_WORDS.items():
        text = text.replace(symbol, word)
    text = _NUMBER.sub(number_to_words, text)
    # Digits glued to letters ("3D", "mp3") are read as numbers too.
    text = _BARE_NUMBER.sub(lambda m: number_to_words(_NUMBER.match(m.group(0) + " ")), text)
    text = _SPACE_BEFORE_PUNCTUATION.sub(r"\1", text)
    return _SPACES.sub(" ", text).strip()


def strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def normalise_text(text: str) -> str:
    """A transcript in the CTC alphabet: lowercase letters, apostrophes inside words, and
    single spaces. ``"Collect $200, Mr. O'Brien!"`` -> ``"collect two hundred dollars mister
    o'brien"``."""
    text = strip_accents(spell_out(text)).lower()
    # Hyphens, slashes and the like separate words when read ("long-forgotten").
    text = _NOT_IN_ALPHABET.sub(" ", text)
    text = _LOOSE_APOSTROPHE.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


@dataclass(frozen=True)
class CharVocabulary:
    """The CTC output classes: blank (index 0), the word separator, ``'`` and ``a``-``z``.

    ``tokens`` are the names the flashlight decoder sees (``-`` blank, ``|`` between
    words); text uses a plain space where the tokens have ``|``.
    """

    tokens: tuple[str, ...] = (BLANK, WORD_SEPARATOR, "'", *LETTERS)

    @property
    def blank(self) -> int:
        return 0

    @property
    def separator(self) -> int:
        return self.tokens.index(WORD_SEPARATOR)

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        """Normalised text -> token ids (no blanks). Raises ValueError naming a character
        outside the alphabet (run :func:`normalise_text` first)."""
        index = {t: i for i, t in enumerate(self.tokens)}
        ids = []
        for char in text:
            key = WORD_SEPARATOR if char == " " else char
            if key not in index or key == BLANK:
                raise ValueError(
                    f"character {char!r} in {text!r} is not in the CTC alphabet "
                    f"(a-z, apostrophe, space); normalise the text first"
                )
            ids.append(index[key])
        return ids

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Token ids (already collapsed, blanks removed) -> text."""
        chars = [self.tokens[int(i)] for i in ids if int(i) != self.blank]
        return "".join(" " if c == WORD_SEPARATOR else c for c in chars).strip()
