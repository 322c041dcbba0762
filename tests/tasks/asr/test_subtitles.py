"""Subtitles and CTM from timed words: the cue builder and the three writers on words with
known times (exact file text), word confidences from the decoders, and ``gfssm transcribe
--format`` run inline on real recordings: one decode, failed files get no subtitles, a file
without speech gives empty cues, nothing past the duration, a format added later reuses the
finished shards."""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil

import numpy as np
import pytest
import soundfile
import torch

from gfssm import GFSSMConfig
from gfssm.tasks import LoadedModel, TaskInputError
from gfssm.tasks.asr.commands import add_transcribe_arguments, make_transcribe_job
from gfssm.tasks.asr.decoding import (
    BeamSearchConfig,
    BeamSearchDecoder,
    WordTiming,
    greedy_decode,
)
from gfssm.tasks.asr.jobs import TranscribeJob
from gfssm.tasks.asr.subtitles import (
    Cue,
    CueOptions,
    build_cues,
    ctm_lines,
    format_timestamp,
    srt_text,
    subtitle_names,
    vtt_text,
    write_text_atomic,
)
from gfssm.tasks.asr.task import AsrSettings, AsrTask
from gfssm.tasks.asr.text import CharVocabulary
from gfssm.tasks.asr.transcribe import TranscriptionResult, transcribe_file
from gfssm.tasks.jobs import run_job_inline

VOCAB = CharVocabulary()
W = WordTiming


# The cue builder and the writers, on words with known times -----------------------------
def test_pause_splits_cues_and_the_three_writers_give_exact_text():
    words = [W("hello", 0.1, 0.5, 0.9), W("world", 0.55, 0.9, 0.8), W("again", 2.0, 2.4, 0.75)]
    cues = build_cues(words, 3.0)  # 1.1 s between "world" and "again": a new cue
    assert cues == [Cue(0.1, 0.9, ("hello world",)), Cue(2.0, 2.4, ("again",))]
    assert srt_text(cues) == (
        "1\n00:00:00,100 --> 00:00:00,900\nhello world\n\n"
        "2\n00:00:02,000 --> 00:00:02,400\nagain\n\n"
    )
    assert vtt_text(cues) == (
        "WEBVTT\n\n"
        "00:00:00.100 --> 00:00:00.900\nhello world\n\n"
        "00:00:02.000 --> 00:00:02.400\nagain\n\n"
    )
    assert ctm_lines("talk", words, 3.0) == [
        "talk 1 0.100 0.400 hello 0.900",
        "talk 1 0.550 0.350 world 0.800",
        "talk 1 2.000 0.400 again 0.750",
    ]


def test_cues_hold_two_balanced_lines_and_a_time_limit():
    names = ["one", "two", "three", "four", "five", "six"]
    words = [W(n, 0.5 * i, 0.5 * i + 0.4) for i, n in enumerate(names)]
    options = CueOptions(max_line_chars=10, max_lines=2, max_seconds=2.0)
    # "one two three four" needs two lines of 10; "five" would need a third: a new cue.
    assert build_cues(words, 10.0, options) == [
        Cue(0.0, 1.9, ("one two", "three four")),
        Cue(2.0, 2.9, ("five six",)),
    ]
    # At most max_seconds a cue: "c" would make the first cue 1.4 s long.
    short = CueOptions(max_seconds=1.0)
    abc = [W("a", 0.0, 0.4), W("b", 0.5, 0.9), W("c", 1.0, 1.4)]
    assert build_cues(abc, 2.0, short) == [Cue(0.0, 0.9, ("a b",)), Cue(1.0, 1.4, ("c",))]
    # Two lines are balanced, the shorter one on top.
    five = CueOptions(max_line_chars=5)
    ab_cd_ef = [W(n, 0.1 * i, 0.1 * i + 0.05) for i, n in enumerate(["ab", "cd", "ef"])]
    assert build_cues(ab_cd_ef, 1.0, five)[0].lines == ("ab", "cd ef")
    # The defaults: 42 characters a line.
    text = "the quick brown fox jumps over the lazy dog and then it runs away"
    spoken = [W(n, 0.3 * i, 0.3 * i + 0.25) for i, n in enumerate(text.split())]
    (cue,) = build_cues(spoken, 10.0)
    assert cue.lines == ("the quick brown fox jumps over", "the lazy dog and then it runs away")
    assert srt_text([cue]).splitlines()[2:4] == list(cue.lines)


def test_no_words_give_empty_valid_files():
    assert build_cues([], 12.5) == []
    assert srt_text([]) == ""
    assert vtt_text([]) == "WEBVTT\n\n"
    assert ctm_lines("x", [], 12.5) == []
    result = TranscriptionResult("silence.wav", "", (), 12.5)
    assert result.cues() == [] and result.srt() == "" and result.vtt() == "WEBVTT\n\n"


def test_times_are_clamped_to_the_duration():
    words = [W("a", 0.5, 0.9), W("b", 0.95, 1.02), W("c", 1.04, 1.1)]
    assert build_cues(words, 1.0) == [Cue(0.5, 1.0, ("a b c",))]
    assert ctm_lines("f", words, 1.0) == [
        "f 1 0.500 0.400 a 1.000",
        "f 1 0.950 0.050 b 1.000",
        "f 1 1.000 0.000 c 1.000",
    ]
    # A duration between two milliseconds: nothing reaches past it once written.
    assert srt_text(build_cues(words, 0.9997)).splitlines()[1] == "00:00:00,500 --> 00:00:00,999"
    assert ctm_lines("f", words, 0.9997)[-1] == "f 1 0.999 0.000 c 1.000"


def test_cues_never_overlap_nor_pass_the_end_on_random_words():
    rng = random.Random(0)
    for _ in range(200):
        duration = rng.uniform(0.5, 30.0)
        t, words = rng.uniform(0, 1), []
        for _ in range(rng.randrange(0, 40)):
            start = max(0.0, t + rng.uniform(-0.1, 1.2))  # overlaps, pauses, past the end
            end = start + rng.uniform(0.0, 0.8)
            words.append(W("w" * rng.randrange(1, 12), start, end, rng.random()))
            t = end
        cues = build_cues(words, duration)
        assert sum(len(" ".join(c.lines).split()) for c in cues) == len(words)
        ends = [0.0]
        for cue in cues:
            assert ends[-1] <= cue.start <= cue.end <= duration
            assert 1 <= len(cue.lines) <= 2 and all(len(line) <= 42 for line in cue.lines)
            ends.append(cue.end)
        for line in srt_text(cues).splitlines():
            if "-->" in line:
                stamps = re.fullmatch(r"(\d\d):(\d\d):(\d\d),(\d{3}) --> .*", line)
                assert stamps is not None
        for line in ctm_lines("u", words, duration):
            _, _, start, dur, _, conf = line.split()
            assert float(start) + float(dur) <= duration and 0 <= float(conf) <= 1


def test_timestamps_and_names():
    assert format_timestamp(3723.4567, ",") == "01:02:03,457"
    assert format_timestamp(0.0, ".") == "00:00:00.000"
    assert format_timestamp(59.9996, ".") == "00:01:00.000"
    paths = ["/r/a/talk.wav", "/r/b/talk.wav", "/r/a/x.wav", "/r/a/x.flac", "/r/a/y z.wav"]
    assert subtitle_names(paths) == ["a/talk", "b/talk", "a/x.wav", "a/x.flac", "a/y z"]
    assert subtitle_names(["/r/one.wav"]) == ["one"]
    assert subtitle_names(["/r/a.wav", "/r/a.wav"]) == ["a.wav", "a.wav-2"]


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "sub" / "talk.srt"
    write_text_atomic(target, "old\n")
    with pytest.raises(UnicodeEncodeError):
        write_text_atomic(target, "half written \ud800 and the rest")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["talk.srt"]


# Confidences from the decoders ----------------------------------------------------------
def posteriors(path: str, probs: list[float]) -> torch.Tensor:
    """(T, V) log-probs: at frame t the token of ``path[t]`` (``-`` blank, ``_`` separator)
    has probability ``probs[t]``, the others share the rest."""
    table = torch.zeros(len(path), len(VOCAB), dtype=torch.float64)
    for t, (ch, p) in enumerate(zip(path, probs)):
        table[t] = (1 - p) / (len(VOCAB) - 1)
        table[t, VOCAB.tokens.index({"-": "-", "_": "|"}.get(ch, ch))] = p
    return table.log().float()


def test_greedy_and_beam_confidences_are_frame_posteriors():
    #        h    h     i    -    _    y    o    -
    probs = [0.5, 0.75, 0.9, 0.9, 0.9, 0.6, 0.8, 0.9]
    em = posteriors("hhi-_yo-", probs)
    greedy = greedy_decode(em, VOCAB)
    assert [w.word for w in greedy.words] == ["hi", "yo"]
    # greedy: every frame whose best token is one of the word's characters
    assert [w.confidence for w in greedy.words] == [
        round((0.5 + 0.75 + 0.9) / 3, 3),
        round((0.6 + 0.8) / 2, 3),
    ]
    beam = BeamSearchDecoder(VOCAB, BeamSearchConfig(beam_size=8)).decode(em)
    assert beam.text == "hi yo"
    (hi, yo) = beam.words
    # beam: the frame of each character on the best path ("h" at frame 0 or 1)
    assert hi.confidence in (round((0.5 + 0.9) / 2, 3), round((0.75 + 0.9) / 2, 3))
    assert yo.confidence == round((0.6 + 0.8) / 2, 3)
    assert all(0 <= w.confidence <= 1 for w in (*greedy.words, *beam.words))


# gfssm transcribe --format, run inline on real recordings -------------------------------
def make_loaded(model) -> LoadedModel:
    config = GFSSMConfig.preset("gfssm", d_model=32, n_layer=2, vocab_size=29)
    return LoadedModel(AsrTask(), model, config, AsrSettings(n_filters=16), {})


@pytest.fixture
def loaded(tiny_model) -> LoadedModel:
    model = tiny_model(bidirectional=False, n_filters=16)
    with torch.no_grad():  # decisive outputs: float reordering cannot flip a best token
        model.head.weight.mul_(10.0)
        model.head.bias.mul_(10.0)
    return make_loaded(model)


def parse(argv):
    parser = argparse.ArgumentParser()
    add_transcribe_arguments(parser)
    return parser.parse_args(argv)


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def srt_times(text: str) -> list[float]:
    found = re.findall(r"(\d\d):(\d\d):(\d\d)[,.](\d{3})", text)
    return [int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000 for h, m, s, ms in found]


@pytest.fixture
def recordings(tmp_path, real_speech):
    """Real recordings in two folders, and a truncated WAV that cannot be transcribed."""
    folder = tmp_path / "user" / "recordings"
    (folder / "day2").mkdir(parents=True)
    for k, (path, _) in enumerate(real_speech):
        shutil.copy(path, folder / ("day2" if k == 2 else "") / path.name)
    wave, rate = soundfile.read(real_speech[0][0], dtype="int16")
    soundfile.write(folder / "cut.wav", np.resize(wave, 11 * rate), rate, subtype="PCM_16")
    data = (folder / "cut.wav").read_bytes()
    (folder / "cut.wav").write_bytes(data[: data.index(b"data") + 8 + 2880])
    return folder


def test_transcribe_writes_subtitles_and_ctm_from_one_decode(loaded, recordings, real_speech):
    user = recordings.parent
    # An earlier run's subtitles of the file that now fails are removed, not left stale.
    (user / "t.srt").mkdir()
    (user / "t.srt" / "cut.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nstale\n\n")
    argv = ["recordings", "--out", "t.jsonl", "--batch-files", "2"]
    job = make_transcribe_job(parse([*argv, "--format", "srt,ctm,jsonl,vtt"]), user, loaded)
    assert job.formats == ("jsonl", "srt", "vtt", "ctm")
    assert job.outputs() == {
        "jsonl": user / "t.jsonl",
        "srt": user / "t.srt",
        "vtt": user / "t.vtt",
        "ctm": user / "t.ctm",
    }
    logged: list[str] = []
    assert run_job_inline(job, loaded, logged.append) == 0

    rows = {r["audio_filepath"]: r for r in read_jsonl(user / "t.jsonl")}
    names = {str(recordings / p.name): p.stem for p, _ in real_speech[:2]} | {
        str(recordings / "day2" / real_speech[2][0].name): f"day2/{real_speech[2][0].stem}"
    }
    assert set(rows) == set(names)
    srt_files = sorted(
        p.relative_to(user / "t.srt").as_posix() for p in user.rglob("*.srt") if p.is_file()
    )
    assert srt_files == sorted(f"{n}.srt" for n in names.values())  # no cut.srt
    assert not (user / "t.vtt" / "cut.vtt").exists()
    assert not [p for p in user.rglob("*") if "partial" in p.name]
    ctm = (user / "t.ctm").read_text().splitlines()
    for path, name in names.items():
        row = rows[path]
        result = TranscriptionResult.from_json(row)
        alone = transcribe_file(loaded.model, path)  # the API gives the same words
        assert result.words == alone.words and result.text == alone.text
        assert all(w.end <= alone.duration for w in alone.words)
        assert result.words and row["words"][0].keys() == {"word", "start", "end", "confidence"}
        srt = (user / "t.srt" / f"{name}.srt").read_text()
        vtt = (user / "t.vtt" / f"{name}.vtt").read_text()
        assert srt == srt_text(build_cues(result.words, result.duration))
        assert vtt == vtt_text(build_cues(result.words, result.duration))
        assert vtt.startswith("WEBVTT\n\n")
        assert " ".join(srt.split("\n\n")[0].splitlines()[2:]).startswith(result.words[0].word)
        times = srt_times(srt)
        assert times == sorted(times) and max(times) <= row["duration"]
        mine = [line.split() for line in ctm if line.split()[0] == name]
        assert [m[4] for m in mine] == [w.word for w in result.words]
        assert [float(m[5]) for m in mine] == [w.confidence for w in result.words]
        for _, channel, start, dur, _, conf in mine:
            assert channel == "1" and 0 <= float(conf) <= 1
            assert float(start) + float(dur) <= row["duration"]
    assert [line.split()[0] for line in ctm] == sorted(line.split()[0] for line in ctm)
    assert logged[0].startswith(f"3 transcripts in {user / 't.jsonl'}")
    assert logged[1] == f"SubRip subtitles of 3 file(s) in {user / 't.srt'}/"
    assert logged[2] == f"WebVTT subtitles of 3 file(s) in {user / 't.vtt'}/"
    assert logged[3] == f"CTM of {len(ctm)} word(s) in {user / 't.ctm'}"
    assert "1 file(s) could not be transcribed" in logged[4]


def test_no_speech_gives_empty_subtitles_not_an_error(tmp_path, tiny_model, real_speech):
    model = tiny_model(bidirectional=True, n_filters=16)
    with torch.no_grad():  # a model that hears nothing: blank on every frame
        model.head.weight.zero_()
        model.head.bias.zero_()
        model.head.bias[VOCAB.blank] = 20.0
    loaded = make_loaded(model)
    soundfile.write(tmp_path / "silence.wav", np.zeros(24_000, np.int16), 16_000)
    shutil.copy(real_speech[2][0], tmp_path / "speech.wav")
    argv = ["silence.wav", "speech.wav", "--out", "out.jsonl", "--format", "srt,vtt,ctm"]
    job = make_transcribe_job(parse(argv), tmp_path, loaded)
    logged: list[str] = []
    assert run_job_inline(job, loaded, logged.append) == 0
    assert not (tmp_path / "out.jsonl").exists()  # jsonl was not asked for
    assert logged[0].startswith("2 transcripts (")
    for name in ("silence", "speech"):
        assert (tmp_path / "out.srt" / f"{name}.srt").read_text() == ""
        assert (tmp_path / "out.vtt" / f"{name}.vtt").read_text() == "WEBVTT\n\n"
    assert (tmp_path / "out.ctm").read_text() == ""
    assert not (tmp_path / "out.failed.jsonl").exists()


def test_format_is_checked_and_keeps_the_fingerprint(tmp_path, loaded, real_speech):
    shutil.copy(real_speech[0][0], tmp_path / "a.wav")
    plain = make_transcribe_job(parse(["a.wav", "--out", "t.jsonl"]), tmp_path, loaded)
    assert plain.formats == ("jsonl",)
    every = parse(["a.wav", "--out", "t.jsonl", "--format", "jsonl,srt,vtt,ctm"])
    assert make_transcribe_job(every, tmp_path, loaded).fingerprint() == plain.fingerprint()
    for bad in ("txt", "srt,json", ","):
        args = parse(["a.wav", "--out", "t.jsonl", "--format", bad])
        with pytest.raises(TaskInputError, match=r"--format .*: expected a comma list of jsonl"):
            make_transcribe_job(args, tmp_path, loaded)


def test_a_format_added_on_rerun_reuses_the_finished_shards(tmp_path, loaded, real_speech):
    """The first run (JSONL only) leaves its shards as ``gfssm transcribe`` does; the rerun
    with subtitles goes through the pipelines' runner and must find every item done: it
    never starts Ray, and writes the new formats from the stored results."""
    from gfssm.pipelines.batch import PoolSpec, run_job
    from gfssm.pipelines.shards import ShardStore, model_fingerprint
    from gfssm.tasks.pretrained import WEIGHTS_FILE

    for path, _ in real_speech:
        shutil.copy(path, tmp_path / path.name)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / WEIGHTS_FILE).write_bytes(b"weights")
    argv = [p.name for p, _ in real_speech] + ["--out", "t.jsonl", "--batch-files", "2"]
    first: TranscribeJob = make_transcribe_job(parse(argv), tmp_path, loaded)
    store = ShardStore(
        first.shard_dir(),
        {
            "job": f"{type(first).__module__}.{type(first).__qualname__}",
            "inputs": first.fingerprint(),
            "model": model_fingerprint(model_dir),
        },
    )
    worker = first.make_worker(loaded)
    for item in first.plan():
        store.write(item.key, worker(item.payload))
    first.finish(store.read, lambda line: None)
    jsonl = (tmp_path / "t.jsonl").read_text()

    again = make_transcribe_job(parse([*argv, "--format", "jsonl,srt,vtt,ctm"]), tmp_path, loaded)

    def no_ray():
        raise AssertionError("a rerun with another format decoded again")

    logged: list[str] = []
    assert run_job(again, model_dir, pool=PoolSpec(), connect=no_ray, log=logged.append) == 0
    assert logged[0] == "greedy decoding" and "all 2 work items already done" in logged[1]
    assert (tmp_path / "t.jsonl").read_text() == jsonl
    for path, _ in real_speech:
        result = TranscriptionResult.from_json(
            next(
                r
                for r in read_jsonl(tmp_path / "t.jsonl")
                if r["audio_filepath"].endswith(path.name)
            )
        )
        assert (tmp_path / "t.srt" / f"{path.stem}.srt").read_text() == result.srt()
        assert (tmp_path / "t.vtt" / f"{path.stem}.vtt").read_text() == result.vtt()
    assert (tmp_path / "t.ctm").read_text().count("\n") == sum(
        len(r["words"]) for r in read_jsonl(tmp_path / "t.jsonl")
    )
