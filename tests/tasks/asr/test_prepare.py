"""``AsrTask.prepare``: the user's paths made absolute against the folder the command ran
in, and every input checked in the driver, in seconds, with the file named."""

from __future__ import annotations

import json
import shutil

import pytest

from gfssm.tasks import TaskInputError
from gfssm.tasks.asr.batching import SpeechDataset
from gfssm.tasks.asr.manifests import ManifestError
from gfssm.tasks.asr.task import AsrSettings, AsrTask
from gfssm.tasks.asr.text import CharVocabulary


@pytest.fixture
def user_corpus(tmp_path, real_speech):
    """A user's folder holding corpus/{train,valid}.jsonl with relative audio paths."""
    user = tmp_path / "user"
    (user / "corpus" / "audio").mkdir(parents=True)
    rows = []
    for path, text in real_speech:
        shutil.copy(path, user / "corpus" / "audio" / path.name)
        rows.append({"audio_filepath": f"audio/{path.name}", "duration": 1.0, "text": text})
    for split in ("train", "valid"):
        (user / "corpus" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return user


def test_relative_paths_resolve_against_the_users_folder(tmp_path, monkeypatch, user_corpus):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # a Ray worker's folder is not the user's
    settings = AsrSettings(train_data=["corpus/train.jsonl"], valid_data=["corpus/valid.jsonl"])
    prepared = AsrTask().prepare(settings, user_corpus)
    assert prepared.train_data == [str(user_corpus / "corpus" / "train.jsonl")]
    assert prepared.valid_data == [str(user_corpus / "corpus" / "valid.jsonl")]
    assert settings.train_data == ["corpus/train.jsonl"]  # settings are frozen: a new copy
    dataset = SpeechDataset(prepared.train_data, vocabulary=CharVocabulary())
    assert len(dataset) == 3
    assert all(
        item.utterance.audio_filepath.startswith(str(user_corpus / "corpus" / "audio"))
        for item in dataset.items
    )


def test_home_is_expanded(tmp_path, monkeypatch, user_corpus):
    monkeypatch.setenv("HOME", str(user_corpus))
    settings = AsrSettings(train_data=["~/corpus/train.jsonl"], valid_data=["~/corpus"])
    with pytest.raises(TaskInputError, match=r"task\.valid_data: .*corpus: a folder without"):
        AsrTask().prepare(settings, tmp_path)
    settings = AsrSettings(train_data=["~/corpus/train.jsonl"], valid_data=["~/corpus/valid.jsonl"])
    prepared = AsrTask().prepare(settings, tmp_path)
    assert prepared.train_data == [str(user_corpus / "corpus" / "train.jsonl")]


@pytest.mark.parametrize(
    "content, message",
    [
        ("", r"train\.jsonl: empty file \(no utterances\)"),
        ("\n\n", r"train\.jsonl: manifest has no utterances"),
        ('{"audio_filepath": "audio/x.wav", "duration": 1.0}\n', r"train\.jsonl:1: missing"),
        (
            '{"audio_filepath": "audio/gone.wav", "duration": 1.0, "text": "a"}\n',
            r"train\.jsonl:1: audio file .*audio/gone\.wav not found.*manifest's folder",
        ),
    ],
)
def test_bad_corpus_is_reported_before_training(user_corpus, content, message):
    (user_corpus / "corpus" / "train.jsonl").write_text(content)
    settings = AsrSettings(train_data=["corpus/train.jsonl"], valid_data=["corpus/valid.jsonl"])
    with pytest.raises(TaskInputError, match=message):
        AsrTask().prepare(settings, user_corpus)


def test_missing_and_unlisted_data(tmp_path, user_corpus):
    task = AsrTask()
    with pytest.raises(TaskInputError, match=r"task\.train_data: .*nothere\.jsonl: no such file"):
        task.prepare(AsrSettings(train_data=["nothere.jsonl"], valid_data=["x"]), tmp_path)
    with pytest.raises(TaskInputError, match=r"task\.train_data is empty"):
        task.prepare(AsrSettings(valid_data=["corpus/valid.jsonl"]), user_corpus)
    (tmp_path / "notes.csv").write_text("a,b\n")
    with pytest.raises(TaskInputError, match=r"notes\.csv: unknown data description"):
        task.prepare(AsrSettings(train_data=["notes.csv"], valid_data=["notes.csv"]), tmp_path)
    assert issubclass(ManifestError, TaskInputError)


def test_common_voice_tsv_without_rows(tmp_path):
    (tmp_path / "train.tsv").write_text("client_id\tpath\tsentence\n")
    with pytest.raises(TaskInputError, match=r"train\.tsv: no rows below the header"):
        AsrTask().prepare(AsrSettings(train_data=["train.tsv"], valid_data=["x"]), tmp_path)


def test_usage_hint_names_the_run():
    assert AsrTask().usage_hint("abc123").startswith("gfssm transcribe --model abc123 ")
