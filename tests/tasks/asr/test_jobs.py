"""The speech batch jobs (``gfssm transcribe``, ``gfssm eval asr``) run inline: the same
plan, worker and merge that ``gfssm`` runs on an actor pool, from the user's folder with
relative paths, equal to the single-process functions; damaged audio is reported, never
transcribed silently."""

from __future__ import annotations

import argparse
import json
import pickle
import shutil
import struct

import numpy as np
import pandas as pd
import pytest
import soundfile
import torch

from gfssm import GFSSMConfig
from gfssm.tasks import LoadedModel, TaskInputError
from gfssm.tasks.asr.commands import (
    add_eval_arguments,
    add_transcribe_arguments,
    make_eval_job,
    make_transcribe_job,
)
from gfssm.tasks.asr.decoding import BeamSearchConfig, BeamSearchDecoder
from gfssm.tasks.asr.decoding_options import DecodingError
from gfssm.tasks.asr.jobs import EvalAsrJob, TranscribeJob
from gfssm.tasks.asr.lm import write_arpa
from gfssm.tasks.asr.task import AsrSettings, AsrTask
from gfssm.tasks.asr.text import CharVocabulary
from gfssm.tasks.asr.transcribe import evaluate_manifest, transcribe, transcribe_file
from gfssm.tasks.jobs import run_job_inline


@pytest.fixture
def loaded(tiny_model) -> LoadedModel:
    model = tiny_model(bidirectional=False, n_filters=16)
    with torch.no_grad():  # decisive outputs: float reordering cannot flip a best token
        model.head.weight.mul_(10.0)
        model.head.bias.mul_(10.0)
    config = GFSSMConfig.preset("gfssm", d_model=32, n_layer=2, vocab_size=29)
    return LoadedModel(AsrTask(), model, config, AsrSettings(n_filters=16), {})


def parse(add, argv):
    parser = argparse.ArgumentParser()
    add(parser)
    return parser.parse_args(argv)


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncated_wav(source, path, seconds=11.0, keep_bytes=2880):
    """A WAV whose header promises ``seconds`` of audio but whose file holds only the
    first ``keep_bytes`` of it (an interrupted copy)."""
    wave, rate = soundfile.read(source, dtype="int16")
    whole = np.resize(wave, int(seconds * rate))
    soundfile.write(path, whole, rate, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"data") + 8 + keep_bytes])
    return path


def with_data_length(source, path, length):
    data = bytearray(source.read_bytes())
    at = data.index(b"data")
    data[at + 4 : at + 8] = struct.pack("<I", length)
    path.write_bytes(bytes(data))
    return path


@pytest.fixture
def damaged_folder(tmp_path, real_speech):
    """Real recordings and one file of each kind of damage, with the reason expected."""
    folder = tmp_path / "user" / "recordings"
    folder.mkdir(parents=True)
    for path, _ in real_speech:
        shutil.copy(path, folder / path.name)
    src = real_speech[0][0]
    truncated_wav(src, folder / "truncated.wav")
    with_data_length(src, folder / "zero-length-header.wav", 0)
    with_data_length(src, folder / "short-header.wav", 1000)
    (folder / "empty.wav").write_bytes(b"")
    wave = soundfile.read(src, dtype="float32")[0].copy()
    wave[8000:8100] = np.nan
    soundfile.write(folder / "nan.wav", wave, 16_000, subtype="FLOAT")
    reasons = {
        "truncated.wav": "truncated: the header promises 11.00 s of audio, the file holds 0.09 s",
        "zero-length-header.wav": "header and data disagree: the header announces no audio",
        "short-header.wav": "header and data disagree: the header says 0.03 s of audio but 2.99 s",
        "empty.wav": "empty file (0 bytes)",
        "nan.wav": "contains NaN or infinite samples (first at 0.500 s)",
    }
    return folder, reasons


def test_transcribe_job_from_the_users_folder_reports_damaged_audio(
    tmp_path, monkeypatch, loaded, damaged_folder, real_speech
):
    folder, reasons = damaged_folder
    user = folder.parent
    monkeypatch.chdir(tmp_path)  # the process runs elsewhere; base_dir is the user's folder
    args = parse(
        add_transcribe_arguments, ["recordings", "--out", "out/t.jsonl", "--batch-files", "3"]
    )
    job = make_transcribe_job(args, user, loaded)
    assert isinstance(job, TranscribeJob) and job.out == user / "out" / "t.jsonl"
    assert job.shard_dir() == user / "out" / "t.jsonl.shards"
    assert [len(i.payload["utterances"]) for i in job.plan()] == [3, 3, 2]
    job = pickle.loads(pickle.dumps(job))  # it travels to the actors
    logged: list[str] = []
    assert run_job_inline(job, loaded, logged.append) == 0

    single = tmp_path / "single.jsonl"
    summary = transcribe(loaded.model, folder, single, batch_files=3, progress=False)
    rows = read_jsonl(user / "out" / "t.jsonl")
    assert rows == read_jsonl(single)
    assert {r["audio_filepath"] for r in rows} == {str(folder / p.name) for p, _ in real_speech}
    failed = {r["audio_filepath"]: r["error"] for r in read_jsonl(user / "out" / "t.failed.jsonl")}
    assert failed == {f.audio_filepath: f.error for f in summary.failed}
    assert set(failed) == {str(folder / name) for name in reasons}
    for name, reason in reasons.items():
        assert reason in failed[str(folder / name)]
    assert logged[0].startswith(f"3 transcripts in {user / 'out' / 't.jsonl'}")
    assert "5 file(s) could not be transcribed" in logged[1]
    assert any("truncated.wav: truncated: the header promises 11.00 s" in line for line in logged)

    # Once the damaged files are gone, a rerun leaves no stale failure list behind.
    for name in reasons:
        (folder / name).unlink()
    job = make_transcribe_job(args, user, loaded)
    assert run_job_inline(job, loaded, logged.append) == 0
    assert not (user / "out" / "t.failed.jsonl").exists()


def test_transcribe_job_inputs_are_checked_in_the_driver(tmp_path, loaded, real_speech):
    (tmp_path / "empty-folder").mkdir()
    cases = [
        (["missing.wav"], r"missing\.wav: no such file or folder"),
        (["empty-folder"], "no audio files found in empty-folder"),
        ([str(real_speech[0][0]), "--batch-files", "0"], "--batch-files 0"),
        ([str(real_speech[0][0]), "--kenlm", "lm.arpa"], "need beam search"),
        ([str(real_speech[0][0]), "--beam", "4", "--kenlm", "lm.arpa"], r"--kenlm lm\.arpa: no"),
        ([str(real_speech[0][0]), "--beam", "4", "--beam-tokens", "0"], "--beam-tokens 0"),
    ]
    for argv, message in cases:
        args = parse(add_transcribe_arguments, [*argv, "--out", "t.jsonl"])
        with pytest.raises(TaskInputError, match=message):
            make_transcribe_job(args, tmp_path, loaded)
    assert issubclass(DecodingError, TaskInputError)


def test_fingerprint_follows_inputs_and_decoding(tmp_path, loaded, real_speech):
    src = real_speech[0][0]
    shutil.copy(src, tmp_path / "a.wav")
    write_arpa(["the cat sat"] * 3, tmp_path / "lm.arpa", order=3, units="chars")
    args = parse(add_transcribe_arguments, ["a.wav", "--out", "t.jsonl"])
    first = make_transcribe_job(args, tmp_path, loaded).fingerprint()
    assert make_transcribe_job(args, tmp_path, loaded).fingerprint() == first
    beam = parse(
        add_transcribe_arguments, ["a.wav", "--out", "t.jsonl", "--beam", "4", "--kenlm", "lm.arpa"]
    )
    with_lm = make_transcribe_job(beam, tmp_path, loaded).fingerprint()
    assert with_lm != first and "lm.arpa" not in json.dumps(with_lm)  # content, not path
    (tmp_path / "a.wav").write_bytes(src.read_bytes() + b"\0\0")
    assert make_transcribe_job(args, tmp_path, loaded).fingerprint() != first


def test_eval_job_equals_the_single_process_evaluation_with_a_character_lm(
    tmp_path, monkeypatch, loaded, real_speech
):
    user = tmp_path / "user"
    (user / "data" / "audio").mkdir(parents=True)
    rows = []
    for path, text in real_speech:
        shutil.copy(path, user / "data" / "audio" / path.name)
        rows.append({"audio_filepath": f"audio/{path.name}", "duration": 1.0, "text": text})
    truncated_wav(real_speech[0][0], user / "data" / "audio" / "cut.wav")
    rows.append({"audio_filepath": "audio/cut.wav", "duration": 11.0, "text": "cut off"})
    (user / "data" / "real.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_arpa([t for _, t in real_speech] * 3, user / "chars.arpa", order=4, units="chars")
    monkeypatch.chdir(tmp_path)
    argv = ["--manifest", "data/real.jsonl", "--batch-files", "2", "--beam", "8"]
    args = parse(add_eval_arguments, [*argv, "--kenlm", "chars.arpa", "--lm-weight", "0.5"])
    job = make_eval_job(args, user, loaded)
    assert isinstance(job, EvalAsrJob) and job.out == user / "real.eval.jsonl"
    (user / "chars.arpa").rename(user / "moved.arpa")  # read once, in the driver
    job = pickle.loads(pickle.dumps(job))
    logged: list[str] = []
    assert run_job_inline(job, loaded, logged.append) == 0
    summary = json.loads(logged[-1])

    decoder = BeamSearchDecoder(
        CharVocabulary(),
        BeamSearchConfig(beam_size=8, kenlm=str(user / "moved.arpa"), lm_weight=0.5),
        loaded.model.frame_seconds,
    )
    single = evaluate_manifest(
        loaded.model,
        user / "data" / "real.jsonl",
        decoder=decoder,
        batch_files=2,
        out_jsonl=tmp_path / "single.jsonl",
    )
    for key in ("wer", "cer", "utterances", "reference_words", "failed"):
        assert summary[key] == single[key], key
    assert read_jsonl(user / "real.eval.jsonl") == read_jsonl(tmp_path / "single.jsonl")
    assert summary["utterances"] == 3 and summary["failed"] == 1
    assert logged[0].startswith("WER ") and "on 3 utterances" in logged[0]
    assert "1 utterance(s) could not be read" in logged[1]
    assert "cut.wav: truncated: the header promises 11.00 s" in logged[2]


def test_eval_job_bad_manifest_is_one_clear_error(tmp_path, loaded):
    (tmp_path / "empty.jsonl").write_text("\n")
    for manifest, message in [
        ("nothere.jsonl", r"--manifest nothere\.jsonl: no such file"),
        ("empty.jsonl", r"empty\.jsonl: manifest has no utterances"),
    ]:
        args = parse(add_eval_arguments, ["--manifest", manifest])
        with pytest.raises(TaskInputError, match=message):
            make_eval_job(args, tmp_path, loaded)


def test_predictor_transcribes_paths(loaded, real_speech):
    spec = AsrTask().predictor()
    assert spec.inputs == (("path", "string"),) and spec.outputs == (("text", "string"),)
    paths = [str(p) for p, _ in real_speech[:2]]
    out = spec.predict(loaded, pd.DataFrame({"path": paths}))
    assert list(out["text"]) == [transcribe_file(loaded.model, p).text for p in paths]
    with pytest.raises(TaskInputError, match="needs a 'path' column"):
        spec.predict(loaded, pd.DataFrame({"file": paths}))
