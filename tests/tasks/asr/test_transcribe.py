"""Batch transcription and evaluation: go on past bad files, keep what was written, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile
import torch

from gfssm.tasks.asr.longform import ChunkingConfig
from gfssm.tasks.asr.transcribe import (
    TranscriptionFailure,
    TranscriptionResult,
    evaluate_manifest,
    transcribe,
    transcribe_batch,
    transcribe_file,
)


@pytest.fixture
def model(tiny_model):
    m = tiny_model(bidirectional=False, n_filters=8)
    with torch.no_grad():  # decisive outputs: float reordering cannot flip a best token
        m.head.weight.mul_(10.0)
        m.head.bias.mul_(10.0)
    return m


@pytest.fixture
def mixed_folder(tmp_path, asr_data, real_speech):
    """Real recordings plus every kind of bad file."""
    folder = tmp_path / "in"
    folder.mkdir()
    for path, _ in real_speech:
        (folder / path.name).write_bytes(path.read_bytes())
    for name in ("bad.wav", "null.wav", "awful.wav", "goforward.raw"):
        (folder / name).write_bytes((asr_data / "pocketsphinx" / name).read_bytes())
    (folder / "empty.flac").write_bytes(b"")
    wave = soundfile.read(real_speech[0][0], dtype="float32")[0].copy()
    wave[100:200] = np.nan
    soundfile.write(folder / "nan.wav", wave, 16_000, subtype="FLOAT")
    return folder


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_transcribe_goes_on_past_bad_files_and_resumes(tmp_path, mixed_folder, model, real_speech):
    out = tmp_path / "out" / "transcripts.jsonl"
    summary = transcribe(model, mixed_folder, out, batch_files=3, progress=False)
    good = {str(mixed_folder / p.name) for p, _ in real_speech}
    rows = read_jsonl(out)
    assert {r["audio_filepath"] for r in rows} == good and summary.written == 3
    assert all(set(r) == {"audio_filepath", "text", "duration", "words"} for r in rows)
    failed = {f.audio_filepath: f.error for f in summary.failed}
    expected_reasons = {
        "bad.wav": "corrupt or truncated wav",
        "null.wav": "no audio samples",
        "awful.wav": "absurd sample rate",
        "goforward.raw": "headerless PCM has no sample rate",
        "empty.flac": "empty file",
        "nan.wav": "NaN",
    }
    assert set(failed) == {str(mixed_folder / n) for n in expected_reasons}
    for name, reason in expected_reasons.items():
        assert (
            name in failed[str(mixed_folder / name)] and reason in failed[str(mixed_folder / name)]
        )
    listed = read_jsonl(out.with_name("transcripts.failed.jsonl"))
    assert {r["audio_filepath"] for r in listed} == set(failed)
    assert summary.audio_seconds == pytest.approx(sum(r["duration"] for r in rows), abs=1e-3)

    # An interrupted run leaves a cut line: it is dropped and that file done again.
    text = out.read_text()
    out.write_text(text[: text.rindex("\n", 0, len(text) - 1) + 1] + '{"audio_filepath": "x')
    again = transcribe(model, mixed_folder, out, raw_sample_rate=16_000, progress=False)
    assert again.skipped == 2 and again.written == 2  # the cut file, and goforward.raw now
    assert len(again.failed) == 5
    rows_after = read_jsonl(out)
    assert [r["text"] for r in rows_after[:2]] == [r["text"] for r in rows[:2]]
    assert {r["audio_filepath"] for r in rows_after} == good | {str(mixed_folder / "goforward.raw")}


def test_transcribe_file_result(model, real_speech):
    path, _ = real_speech[0]
    result = transcribe_file(model, path)
    assert isinstance(result, TranscriptionResult)
    assert result.duration == pytest.approx(soundfile.info(path).duration)
    assert result.text == " ".join(w.word for w in result.words)
    assert all(0 <= w.start < w.end <= result.duration for w in result.words)  # clamped


def test_batch_path_equals_per_file_path(model, real_speech, asr_data):
    files = [p for p, _ in real_speech] + [asr_data / "asterisk" / "digits-5.wav"]
    missing = asr_data / "nothere.wav"
    chunking = ChunkingConfig(chunk_seconds=2.0)  # the 3 s recording takes the long path
    results = transcribe_batch(model, [*files, missing], chunking=chunking)
    assert isinstance(results[-1], TranscriptionFailure) and "file not found" in results[-1].error
    for path, result in zip(files, results):
        assert result == transcribe_file(model, path, chunking=chunking)


def test_evaluate_manifest_per_utterance_and_overall(tmp_path, model, real_speech):
    manifest = tmp_path / "real.jsonl"
    rows = [{"audio_filepath": str(p), "duration": 1.0, "text": t} for p, t in real_speech]
    rows.append({"audio_filepath": str(tmp_path / "gone.wav"), "duration": 1.0, "text": "x"})
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    per_utt = tmp_path / "per_utt.jsonl"
    summary = evaluate_manifest(model, manifest, out_jsonl=per_utt)
    assert summary["utterances"] == 3 and summary["failed"] == 1
    assert summary["reference_words"] == sum(len(t.split()) for _, t in real_speech)
    assert summary["wer"] >= 0.9 and summary["cer"] > 0.3  # random weights
    assert summary["real_time_factor"] > 0
    lines = read_jsonl(per_utt)
    assert [r.get("reference") for r in lines if "error" not in r] == [
        "he was not an ill disposed young man",
        "he might even have been made amiable himself",
        "ten of clubs",
    ]
    assert "gone.wav: file not found" in next(r["error"] for r in lines if "error" in r)


def test_resume_refuses_a_foreign_output_file(tmp_path, model, real_speech):
    out = tmp_path / "out.jsonl"
    out.write_text('{"audio_filepath": "a.wav", "text": "x"}\nnot json at all\n')
    with pytest.raises(ValueError, match=r"out\.jsonl:2: not a transcription line"):
        transcribe(model, [real_speech[0][0]], out, progress=False)
    assert out.read_text().startswith('{"audio_filepath": "a.wav"')  # nothing overwritten
