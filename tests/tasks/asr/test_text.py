"""Transcript normalisation and the CTC character table."""

from __future__ import annotations

import pytest

from gfssm.tasks.asr.text import CharVocabulary, normalise_text, spell_out


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Collect $200, Mr. O'Brien!", "collect two hundred dollars mister o'brien"),
        ("A long-forgotten loved one.", "a long forgotten loved one"),
        ("press 1 to mute, 2 to lock", "press one to mute two to lock"),
        ("a 28.8 kilobit modem", "a twenty eight point eight kilobit modem"),
        ("the 21st century, in 1984", "the twenty first century in nineteen eighty four"),
        ("1,000,000 and 10%", "one million and ten percent"),
        ("rock & roll", "rock and roll"),
        ("the 'quoted' word", "the quoted word"),
        ("Café  naïve", "cafe naive"),
        ("3D", "three d"),
        ("   ", ""),
    ],
)
def test_normalise_text(raw, expected):
    assert normalise_text(raw) == expected


def test_spell_out_keeps_punctuation_for_the_synthesiser():
    assert spell_out("Bank error in your favor.  Collect $200.") == (
        "Bank error in your favor. Collect two hundred dollars."
    )


def test_vocabulary_round_trip_and_names():
    vocab = CharVocabulary()
    assert len(vocab) == 29 and vocab.blank == 0 and vocab.tokens[vocab.separator] == "|"
    text = "don't panic"
    ids = vocab.encode(text)
    assert vocab.blank not in ids
    assert vocab.decode(ids) == text


def test_vocabulary_rejects_unnormalised_text_naming_the_character():
    with pytest.raises(ValueError, match="'7'"):
        CharVocabulary().encode("route 7")
