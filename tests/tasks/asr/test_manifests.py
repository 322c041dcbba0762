"""Data descriptions: JSONL manifests, LibriSpeech trees, Common Voice TSV, plain lists."""

from __future__ import annotations

import json

import pytest
import soundfile

from gfssm.tasks.asr.manifests import (
    ManifestError,
    iter_audio_inputs,
    read_dataset,
    read_manifest,
)


def write_lines(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_manifest_resolves_relative_paths_and_optional_fields(tmp_path, real_speech):
    (path, text), (path2, _) = real_speech[0], real_speech[1]
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / path.name).write_bytes(path.read_bytes())
    manifest = write_lines(
        tmp_path / "m.jsonl",
        [
            {"audio_filepath": f"audio/{path.name}", "duration": 2.99, "text": text},
            "",
            {"audio_filepath": str(path2), "duration": 1.0, "text": "x", "offset": 0.5, "extra": 1},
        ],
    )
    utts = read_manifest(manifest)
    assert [u.audio_filepath for u in utts] == [str(tmp_path / "audio" / path.name), str(path2)]
    assert utts[0].text == text and utts[1].offset == 0.5 and utts[0].offset == 0.0
    assert utts[1].source == f"{manifest}:3"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            {"audio_filepath": "a.wav", "text": "hi"},
            r"m\.jsonl:2: missing field\(s\) \['duration'\]",
        ),
        (
            {"audio_filepath": "a.wav", "duration": "long", "text": "hi"},
            r"m\.jsonl:2: field 'duration' must be a number",
        ),
        (
            {"audio_filepath": "a.wav", "duration": -1, "text": "hi"},
            r"m\.jsonl:2: field 'duration' must be > 0",
        ),
        (
            {"audio_filepath": "", "duration": 1, "text": "hi"},
            r"m\.jsonl:2: field 'audio_filepath'",
        ),
        (
            {"audio_filepath": "a.wav", "duration": 1, "text": 5},
            r"m\.jsonl:2: field 'text' must be a string",
        ),
        ('{"audio_filepath": "a.wav", "duration": 1,', r"m\.jsonl:2: not valid JSON"),
        ("[1, 2]", r"m\.jsonl:2: expected a JSON object"),
    ],
)
def test_bad_manifest_lines_are_named(tmp_path, row, message):
    good = {"audio_filepath": "a.wav", "duration": 1.0, "text": "fine"}
    manifest = write_lines(tmp_path / "m.jsonl", [good, row])
    with pytest.raises(ManifestError, match=message):
        read_manifest(manifest)


def test_librispeech_tree(tmp_path, real_speech):
    chapter = tmp_path / "19" / "198"
    chapter.mkdir(parents=True)
    lines = []
    for i, (path, text) in enumerate(real_speech[:2]):
        wave, rate = soundfile.read(path)
        soundfile.write(chapter / f"19-198-{i:04d}.flac", wave, rate)
        lines.append(f"19-198-{i:04d} {text.upper()}")
    (chapter / "19-198.trans.txt").write_text("\n".join(lines) + "\n")
    utts = read_dataset(tmp_path)
    assert len(utts) == 2
    assert utts[0].text == real_speech[0][1].upper()
    assert utts[0].duration == pytest.approx(soundfile.info(real_speech[0][0]).duration, abs=1e-3)
    (chapter / "19-198-0001.flac").unlink()
    with pytest.raises(ManifestError, match=r"19-198\.trans\.txt:2: no 19-198-0001\.flac"):
        read_dataset(tmp_path)


def test_common_voice_tsv(tmp_path, real_speech):
    clips = tmp_path / "clips"
    clips.mkdir()
    path, text = real_speech[2]
    wave, rate = soundfile.read(path)
    soundfile.write(clips / "common_voice_en_1.mp3", wave, rate, format="MP3")
    tsv = tmp_path / "test.tsv"
    tsv.write_text(
        "client_id\tpath\tsentence\tup_votes\n"
        f"abc\tcommon_voice_en_1.mp3\t{text.capitalize()}.\t2\n"
    )
    utts = read_dataset(tsv)
    assert len(utts) == 1 and utts[0].text == "Ten of clubs."
    assert utts[0].duration == pytest.approx(len(wave) / rate, abs=0.1)
    bad = tmp_path / "bad.tsv"
    bad.write_text("client_id\tfile\ttext\n")
    with pytest.raises(
        ManifestError, match=r"bad\.tsv:1: missing column\(s\) \['path', 'sentence'\]"
    ):
        read_dataset(bad)


def test_transcription_inputs_from_lists_and_folders(tmp_path, asr_data):
    listing = tmp_path / "files.txt"
    listing.write_text(f"# to do\n{asr_data / 'asterisk' / 'digits-5.wav'}\n\nrelative.wav\n")
    found = [u.audio_filepath for u in iter_audio_inputs(listing)]
    assert found == [str(asr_data / "asterisk" / "digits-5.wav"), str(tmp_path / "relative.wav")]
    folder = [u.audio_filepath for u in iter_audio_inputs(asr_data / "asterisk")]
    assert folder == sorted(str(p) for p in (asr_data / "asterisk").glob("*.wav"))


def test_unknown_description_is_an_error(tmp_path):
    with pytest.raises(ManifestError, match=r"data\.csv: unknown data description"):
        read_dataset(tmp_path / "data.csv")
