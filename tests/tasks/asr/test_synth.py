"""The espeak-ng corpus: sentence selection, held-out voices, reproducibility, resuming."""

from __future__ import annotations

import json

import pytest
import soundfile

from gfssm.tasks.asr.acoustics import AcousticsConfig
from gfssm.tasks.asr.sentences import collect_sentences, speakable, split_sentences
from gfssm.tasks.asr.synth import SynthConfig, build_corpus, main, plan_jobs
from gfssm.tasks.asr.voices import speaker_of

FORTUNES = """\
A day for firm decisions!!!!!  Or is it?
%
Bank error in your favor.  Collect $200.
%
The IBM manual says to reboot.
%
	if (x) { return y; }
	else { return z; }
%
You will be successful in your work.
		-- Anonymous
%
Avoid reality at all costs.  Are you sure the back door is locked?
%
A visit to a strange place will bring fresh work.  Accent on helpful side of your nature.
%
Afternoon very favorable for romance.  Try a single person for a change.
%
Among the lucky, you are the chosen one.  All the troubles you have will pass away quickly.
%
Are you making all this up as you go along?  Artistic ventures highlighted.  Rob a museum.
%
Avert misunderstanding by calm, poise, and balance.  Be careful!  Is it classified?
%
Another good night not to sleep in a eucalyptus tree.  Are you a turtle?
%
Abandon the search for Truth; settle for a good fantasy.  Advancement in position.
"""


@pytest.fixture
def fortune_file(tmp_path):
    path = tmp_path / "fortunes"
    path.write_text(FORTUNES)
    return path


def test_sentences_are_split_cleaned_and_filtered(fortune_file):
    assert split_sentences("One thing.  Two things!  Three?") == [
        "One thing.",
        "Two things!",
        "Three?",
    ]
    assert speakable("The IBM manual says to reboot.") is None  # would be spelled out
    assert speakable("Hi there.") is None  # too short
    money = speakable("Bank error in your favor.")
    assert money.text == "bank error in your favor" and money.spoken == "bank error in your favor."
    sentences = collect_sentences([fortune_file])
    texts = [s.text for s in sentences]
    assert "collect two hundred dollars" in texts
    assert "you will be successful in your work" in texts  # attribution line dropped
    assert not any("return" in t for t in texts)  # code is not prose
    assert len(texts) == len(set(texts)) >= 20
    # A folder stands for its fortune files; binary .dat indexes are not read as text.
    (fortune_file.parent / "fortunes.dat").write_bytes(bytes(range(256)) * 4)
    assert collect_sentences([fortune_file.parent]) == sentences


def corpus_config(**overrides) -> SynthConfig:
    values = dict(
        seed=3,
        train_utterances=5,
        valid_utterances=2,
        valid_variants=2,
        accents=("en-us", "en-gb"),
        variants=("m1", "m2", "f1", "f2", "m3"),
        valid_sentence_fraction=0.2,
    )
    values.update(overrides)
    return SynthConfig(**values)


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_corpus_holds_out_whole_voices_and_is_reproducible(tmp_path, fortune_file):
    summary = build_corpus([fortune_file], tmp_path / "a", corpus_config(), jobs=2)
    train, valid = rows(tmp_path / "a" / "train.jsonl"), rows(tmp_path / "a" / "valid.jsonl")
    assert len(train) == 5 and len(valid) == 2
    held = set(summary["valid_variants"])
    assert len(held) == 2 and held.isdisjoint(summary["train_variants"])
    assert all(r["voice"].split("+")[1] in held for r in valid)
    assert all(r["voice"].split("+")[1] not in held for r in train)
    assert {r["text"] for r in train}.isdisjoint(r["text"] for r in valid)
    for r in train + valid:
        info = soundfile.info(tmp_path / "a" / r["audio_filepath"])
        assert info.samplerate == 16_000 and info.duration == pytest.approx(r["duration"], abs=1e-3)
    build_corpus([fortune_file], tmp_path / "b", corpus_config(), jobs=1)
    for r in train:
        assert (tmp_path / "a" / r["audio_filepath"]).read_bytes() == (
            tmp_path / "b" / r["audio_filepath"]
        ).read_bytes()
    assert rows(tmp_path / "b" / "train.jsonl") == train
    other = build_corpus([fortune_file], tmp_path / "c", corpus_config(seed=4), jobs=2)
    assert rows(tmp_path / "c" / "train.jsonl") != train or other["valid_variants"] != list(held)


def test_interrupted_corpus_resumes(tmp_path, fortune_file):
    out = tmp_path / "corpus"
    assert (
        main(
            [
                "--text",
                str(fortune_file),
                "--out",
                str(out),
                "--train-utterances",
                "5",
                "--valid-utterances",
                "2",
                "--valid-variants",
                "2",
                "--seed",
                "3",
                "--accents",
                "en-us",
                "en-gb",
                "--variants",
                "m1",
                "m2",
                "f1",
                "f2",
                "m3",
                "--jobs",
                "1",
            ]
        )
        == 0
    )
    manifest = out / "train.jsonl"
    before = rows(manifest)
    kept = {r["id"]: (out / r["audio_filepath"]).stat().st_mtime_ns for r in before[:3]}
    # Simulate a crash: the last rows never reached the manifest, one line is cut.
    lines = manifest.read_text().splitlines(keepends=True)
    manifest.write_text("".join(lines[:3]) + lines[3][:10])
    (out / before[4]["audio_filepath"]).unlink()
    config = corpus_config(seed=3, valid_sentence_fraction=0.1)
    build_corpus([fortune_file], out, config, jobs=1)
    assert rows(manifest) == before
    for r in before[:3]:
        assert (out / r["audio_filepath"]).stat().st_mtime_ns == kept[r["id"]]
    with pytest.raises(ValueError, match="other settings"):
        build_corpus([fortune_file], out, corpus_config(seed=9), jobs=1)


def test_held_out_speakers_never_train_under_another_engine():
    """flite's slt and festival's cmu_us_slt_arctic_hts are one person: holding out a speaker
    takes every voice of theirs, whichever engine, and an espeak-only plan draws no engine."""
    sentences = collect_sentences_from_text()
    voices = {
        "espeak": ["m1", "m2", "f1", "f2", "m3"],
        "flite": ["awb", "kal16", "rms", "slt"],
        "festival": ["cmu_us_slt_arctic_hts", "kal_diphone", "ked_diphone"],
    }
    engines = (("espeak", 2.0), ("flite", 1.0), ("festival", 1.0))
    held_speakers = set()
    for seed in range(12):
        config = corpus_config(seed=seed, engines=engines, train_utterances=60, valid_utterances=40)
        jobs, info = plan_jobs(config, sentences, voices)
        valid = {(j.engine, j.variant) for j in jobs if j.split == "valid"}
        train = {(j.engine, j.variant) for j in jobs if j.split == "train"}
        held = {speaker_of(e, v) for e, v in valid if e != "espeak"}
        held_speakers |= held
        assert len(held) == 1
        assert not any(speaker_of(e, v) in held for e, v in train)
        both = [f"{e}:{v}" for e, names in voices.items() if e != "espeak" for v in names]
        assert sorted(info["valid_voices"] + info["train_voices"]) == sorted(
            both + [f"espeak:{v}" for v in voices["espeak"]]
        )
        assert {j.engine for j in jobs if j.split == "train"} == {"espeak", "flite", "festival"}
    assert {"slt", "kal"} & held_speakers  # some seed held out a two-engine speaker
    espeak_only = corpus_config(seed=3)
    plan, _ = plan_jobs(espeak_only, sentences, {"espeak": voices["espeak"]})
    mixed, _ = plan_jobs(espeak_only, sentences, voices)  # engines not asked for are unused
    assert plan == mixed and {j.engine for j in plan} == {"espeak"}


def collect_sentences_from_text():
    return [s for s in map(speakable, split_sentences(FORTUNES.replace("%", " "))) if s]


def test_mixed_engine_corpus_with_acoustics_is_reproducible(tmp_path, fortune_file):
    acoustics = AcousticsConfig(
        speed_factor=(0.9, 1.1),
        reverb_prob=0.5,
        noise_prob=0.5,
        telephone_prob=0.5,
        gain_db=(-6.0, 3.0),
    )
    engines = (("espeak", 1.0), ("flite", 1.0), ("festival", 1.0))
    config = corpus_config(engines=engines, acoustics=acoustics, train_utterances=6)
    summary = build_corpus([fortune_file], tmp_path / "a", config, jobs=2)
    train = rows(tmp_path / "a" / "train.jsonl")
    valid = rows(tmp_path / "a" / "valid.jsonl")
    assert {r["engine"] for r in train} <= {"espeak", "flite", "festival"}
    assert all("acoustics" in r for r in train) and not any("acoustics" in r for r in valid)
    assert {r["voice"] for r in valid} <= set(summary["valid_voices"]) | {
        r["voice"] for r in valid if r["engine"] == "espeak"
    }
    for r in train + valid:
        wave, rate = soundfile.read(tmp_path / "a" / r["audio_filepath"], dtype="float32")
        assert rate == 16_000 and len(wave) / rate == pytest.approx(r["duration"], abs=1e-3)
        assert 1e-3 < float((wave**2).mean()) ** 0.5 and abs(wave).max() <= 1.0
    build_corpus([fortune_file], tmp_path / "b", config, jobs=1)
    assert rows(tmp_path / "b" / "train.jsonl") == train
    for r in train:
        assert (tmp_path / "a" / r["audio_filepath"]).read_bytes() == (
            tmp_path / "b" / r["audio_filepath"]
        ).read_bytes()


def test_festival_reads_the_quote_and_dash_run_that_crashes_it(tmp_path):
    """festival's text front end segfaults on ``you." -- alexander`` (a fortune attribution)
    and on a leading "...": the other engines read sentences with plain punctuation."""
    from gfssm.tasks.asr.voices import speak

    for text in (
        'watson, come here, i want you." -- alexander graham bell',
        "... but hey, this is linux, isn't it meant to do infinite loops in five seconds?",
    ):
        wave, rate = speak("festival", "ked_diphone", text, tmp_path / "w.wav")
        assert rate == 16_000 and len(wave) / rate > 2.0
