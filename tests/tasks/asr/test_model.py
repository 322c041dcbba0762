"""The speech model: front-end framing, padding that never leaks, exact streaming."""

from __future__ import annotations

import pytest
import torch

from gfssm.kernels.testing import assert_close
from gfssm.tasks.asr.audio import read_audio
from gfssm.tasks.asr.frontend import WaveformFrontend


def real_batch(real_speech, dtype=torch.float64):
    waves = [read_audio(path).to(dtype) for path, _ in real_speech]
    lengths = torch.tensor([w.shape[0] for w in waves])
    audio = torch.zeros(len(waves), int(lengths.max()), dtype=dtype)
    for i, w in enumerate(waves):
        audio[i, : w.shape[0]] = w
    return waves, audio, lengths


def test_frontend_gives_20ms_frames_with_400_samples_of_history():
    frontend = WaveformFrontend(24, n_filters=8)
    assert frontend.frame_samples == 320 and frontend.context_samples == 400
    for n in (1, 319, 320, 321, 16_000, 16_001):
        frames, lengths = frontend(torch.randn(1, n))
        assert frames.shape == (1, -(-n // 320), 24) and int(lengths[0]) == -(-n // 320)


def test_frames_do_not_look_ahead():
    """Frame j depends on samples before 320 (j + 1) only: what streaming relies on."""
    frontend = WaveformFrontend(16, n_filters=8).double()
    audio = torch.randn(1, 3200, dtype=torch.float64)
    changed = audio.clone()
    changed[:, 1600:] = torch.randn(1, 1600, dtype=torch.float64)
    a, _ = frontend(audio)
    b, _ = frontend(changed)
    assert torch.equal(a[:, :5], b[:, :5]) and not torch.allclose(a[:, 5], b[:, 5])


@pytest.mark.parametrize("bidirectional", [True, False])
def test_padding_never_leaks_into_real_frames(tiny_model, real_speech, bidirectional):
    model = tiny_model(bidirectional=bidirectional, dtype=torch.float64)
    waves, audio, lengths = real_batch(real_speech)
    garbage = audio.clone()
    for i, n in enumerate(lengths.tolist()):
        garbage[i, n:] = torch.randn(garbage.shape[1] - n, dtype=torch.float64) * 100
    with torch.no_grad():
        batched, frames = model(audio, lengths)
        with_garbage, _ = model(garbage, lengths)
        for i, wave in enumerate(waves):
            alone, alone_frames = model(wave[None])
            n = int(frames[i])
            assert n == int(alone_frames[0])
            assert_close(batched[i, :n], alone[0])
            assert torch.all(batched[i, n:] == 0)
    assert torch.equal(batched, with_garbage)


def test_padding_gets_no_gradient_and_gives_none(tiny_model, real_speech):
    model = tiny_model(bidirectional=True, dtype=torch.float64)
    _, audio, lengths = real_batch(real_speech)
    audio.requires_grad_(True)
    log_probs, frames = model(audio, lengths)
    log_probs.sum().backward()
    for i, n in enumerate(lengths.tolist()):
        assert torch.all(audio.grad[i, n:] == 0)
        assert audio.grad[i, :n].abs().sum() > 0


def test_streaming_pieces_equal_the_whole_file(tiny_model, real_speech):
    model = tiny_model(bidirectional=False, dtype=torch.float64)
    wave = torch.cat([read_audio(p).double() for p, _ in real_speech])
    with torch.no_grad():
        whole, _ = model(wave[None])
        state = model.start_stream(1)
        sizes = [320, 320 * 7, 320 * 50, 320 * 3]
        pieces, start, k = [], 0, 0
        while start < wave.shape[0]:
            size = sizes[k % len(sizes)]
            pieces.append(model.stream(wave[None, start : start + size], state))
            start, k = start + size, k + 1
    streamed = torch.cat(pieces, dim=1)
    assert streamed.shape == whole.shape and state.frames == whole.shape[1]
    assert_close(streamed, whole)


def test_bidirectional_model_refuses_to_stream(tiny_model):
    with pytest.raises(ValueError, match="overlapping"):
        tiny_model(bidirectional=True).start_stream(1)


def test_time_and_channel_masks_change_only_what_they_mask(tiny_model, real_speech):
    model = tiny_model(bidirectional=False, dtype=torch.float64)
    _, audio, lengths = real_batch(real_speech[:1])
    frames = int(model.frontend.num_frames(lengths)[0])
    time_mask = torch.zeros(1, frames, dtype=torch.bool)
    time_mask[0, 40:45] = True
    with torch.no_grad():
        plain, _ = model(audio, lengths)
        masked, _ = model(audio, lengths, time_mask=time_mask)
        channel = torch.zeros(1, model.frontend.n_filters, dtype=torch.bool)
        channel[0, 3:6] = True
        by_channel, _ = model(audio, lengths, channel_mask=channel)
    # Causal model: frames before the mask (and its conv reach) are untouched.
    assert torch.equal(plain[:, :40], masked[:, :40])
    assert not torch.allclose(plain[:, 40:45], masked[:, 40:45])
    assert not torch.allclose(plain, by_channel)
