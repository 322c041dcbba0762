"""Manifests of the real evaluation recordings, built from the packages' own layout."""

from __future__ import annotations

import shutil

import pytest

from gfssm.tasks.asr.realdata import (
    ASTERISK_TEXTS,
    ASTERISK_VOICE,
    asterisk_prompt_texts,
    asterisk_set,
    pocketsphinx_sets,
)
from gfssm.tasks.asr.text import normalise_text


def test_asterisk_texts_skip_tones_and_silence(asr_data):
    texts = asterisk_prompt_texts(asr_data / "asterisk" / "core-sounds-en-excerpt.txt.gz")
    assert texts["auth-thankyou"] == "Thank you."
    assert texts["letters/at"] == "at"  # the bracketed symbol is not spoken
    assert "beep" not in texts and "silence/1" not in texts
    assert normalise_text(texts["conf-adminmenu-162"]).startswith(
        "please press one to mute or unmute yourself two to lock"
    )


def test_asterisk_set_from_the_package_layout(tmp_path, asr_data):
    texts = tmp_path / ASTERISK_TEXTS
    texts.parent.mkdir(parents=True)
    shutil.copy(asr_data / "asterisk" / "core-sounds-en-excerpt.txt.gz", texts)
    voice = tmp_path / ASTERISK_VOICE
    (voice / "digits").mkdir(parents=True)
    shutil.copy(asr_data / "asterisk" / "auth-thankyou.wav", voice / "auth-thankyou.wav")
    shutil.copy(asr_data / "asterisk" / "digits-5.wav", voice / "digits" / "5.wav")
    utts = asterisk_set(tmp_path)
    assert [(u.text, round(u.duration, 2)) for u in utts] == [
        ("Thank you.", pytest.approx(0.96, abs=0.02)),
        ("five", pytest.approx(0.82, abs=0.02)),
    ]


def test_pocketsphinx_sets_from_the_sdist_layout(tmp_path, asr_data):
    data = tmp_path / "test" / "data"
    (data / "librivox").mkdir(parents=True)
    (data / "cards").mkdir()
    for f in (asr_data / "pocketsphinx").glob("sense_and_sensibility_*"):
        shutil.copy(f, data / "librivox" / f.name)
    shutil.copy(asr_data / "pocketsphinx" / "cards-001.wav", data / "cards" / "001.wav")
    (data / "cards" / "cards.transcription").write_text("<s> ten of clubs  </s> (001)\n")
    shutil.copy(asr_data / "pocketsphinx" / "goforward.raw", data / "goforward.raw")
    sets = pocketsphinx_sets(tmp_path)
    assert [u.text for u in sets["librivox"]] == [
        "he was not an ill disposed young man",
        "he might even have been made amiable himself",
    ]
    assert sets["cards"][0].text == "ten of clubs"
    (go,) = sets["goforward"]
    assert go.sample_rate == 16_000 and go.duration == pytest.approx(89_160 / 2 / 16_000, abs=1e-4)
