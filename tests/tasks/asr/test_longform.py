"""Long audio in constant memory: a file of more than ten minutes of real speech."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch

from gfssm.kernels.testing import assert_close
from gfssm.tasks.asr.audio import iter_audio_blocks, read_audio
from gfssm.tasks.asr.decoding import greedy_decode
from gfssm.tasks.asr.longform import ChunkingConfig, LongformStats, decode_long_audio, rechunk
from gfssm.tasks.asr.text import CharVocabulary
from gfssm.tasks.asr.transcribe import transcribe_file

VOCAB = CharVocabulary()
TEN_MINUTES = 600.0


@pytest.fixture(scope="module")
def long_real_file(tmp_path_factory, asr_data) -> tuple:
    """> 10 minutes of the committed real recordings (LibriVox, cards, telephony prompts,
    go-forward), concatenated with short pauses, written at 8 kHz so reading also
    resamples block by block."""
    parts = [read_audio(p) for p in sorted((asr_data / "pocketsphinx").glob("*0.wav"))]
    parts += [read_audio(asr_data / "pocketsphinx" / "cards-001.wav")]
    parts += [read_audio(p) for p in sorted((asr_data / "asterisk").glob("*.wav"))]
    parts += [read_audio(asr_data / "pocketsphinx" / "goforward.raw", raw_sample_rate=16_000)]
    pause = torch.zeros(4000)
    one_round = torch.cat([torch.cat([p, pause]) for p in parts])
    rounds = int(np.ceil(TEN_MINUTES * 16_000 / one_round.shape[0])) + 1
    audio = one_round.repeat(rounds)
    path = tmp_path_factory.mktemp("long") / "long_real_speech.wav"
    narrow = torch.nn.functional.avg_pool1d(audio[None, None], 2)[0, 0]  # 8 kHz, simple
    soundfile.write(path, narrow.numpy(), 8_000, subtype="PCM_16")
    return path, read_audio(path)


def test_file_is_long_real_speech(long_real_file):
    path, audio = long_real_file
    assert soundfile.info(path).duration > TEN_MINUTES
    assert audio.shape[0] > TEN_MINUTES * 16_000


def decisive(model):
    """Scale the head so that float32 reordering cannot flip a best token."""
    with torch.no_grad():
        model.head.weight.mul_(10.0)
        model.head.bias.mul_(10.0)
    return model


def test_causal_streaming_of_ten_minutes_equals_a_whole_file_run(long_real_file, tiny_model):
    path, audio = long_real_file
    model = decisive(tiny_model(bidirectional=False, n_filters=8))
    stats = LongformStats()
    blocks = iter_audio_blocks(path, block_seconds=7.3)
    streamed = decode_long_audio(
        model, blocks, chunking=ChunkingConfig(chunk_seconds=30), stats=stats
    )
    # Constant memory: the model never saw more than one 30 s piece at a time.
    assert stats.samples == audio.shape[0]
    assert stats.max_window_samples <= 30 * 16_000
    assert stats.windows == int(np.ceil(audio.shape[0] / (30 * 16_000)))
    with torch.no_grad():
        whole, _ = model(audio[None])
    expected = greedy_decode(whole[0], VOCAB)
    assert streamed.text == expected.text and len(streamed.text.split()) > 100
    assert streamed.words == expected.words


def test_bidirectional_windows_of_ten_minutes(long_real_file, tiny_model):
    path, audio = long_real_file
    model = decisive(tiny_model(bidirectional=True, n_filters=8))
    chunking = ChunkingConfig(chunk_seconds=40, context_seconds=4)
    stats = LongformStats()
    result = decode_long_audio(
        model, iter_audio_blocks(path, block_seconds=11), chunking=chunking, stats=stats
    )
    window = (40 + 2 * 4) * 16_000
    assert stats.max_window_samples <= window and stats.samples == audio.shape[0]
    assert stats.windows == int(np.ceil(audio.shape[0] / (40 * 16_000)))
    # Each chunk's frames are what the model gives on its window alone (with the real
    # samples before the window as front-end history).
    chunk, context = 40 * 16_000, 4 * 16_000
    pieces = []
    with torch.no_grad():
        for start in range(0, audio.shape[0], chunk):
            lo, hi = max(0, start - context), min(audio.shape[0], start + chunk + context)
            history = audio[max(0, lo - 400) : lo]
            history = torch.nn.functional.pad(history, (400 - history.shape[0], 0))
            log_probs = model.forward_window(audio[None, lo:hi], history[None])[0]
            first = (start - lo) // 320
            pieces.append(
                log_probs[first : first + -(-(min(start + chunk, audio.shape[0]) - start) // 320)]
            )
    expected = greedy_decode(torch.cat(pieces), VOCAB)
    assert result.text == expected.text
    times = [w.start for w in result.words]
    assert times == sorted(times) and result.words[-1].end <= audio.shape[0] / 16_000 + 0.02


def test_one_window_is_the_whole_file(real_speech, tiny_model):
    model = tiny_model(bidirectional=True, dtype=torch.float64)
    path, _ = real_speech[0]
    model_input = read_audio(path).double()
    with torch.no_grad():
        whole, _ = model(model_input[None])
        window = model.forward_window(model_input[None], torch.zeros(1, 400, dtype=torch.float64))
    assert_close(window, whole)
    result = transcribe_file(model.float(), path, chunking=ChunkingConfig(chunk_seconds=60))
    assert result.duration == pytest.approx(soundfile.info(path).duration)


def test_rechunk_keeps_every_sample():
    blocks = [torch.arange(0, 5), torch.arange(5, 6), torch.arange(6, 20)]
    pieces = list(rechunk(blocks, 6))
    assert [p.shape[0] for p in pieces] == [6, 6, 6, 2]
    assert torch.equal(torch.cat(pieces), torch.arange(20))
