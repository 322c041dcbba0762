"""Reading real audio in every supported form, and clear errors for bad files."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch

from gfssm.kernels.testing import assert_close
from gfssm.tasks.asr.audio import (
    AudioError,
    audio_info,
    iter_audio_blocks,
    read_audio,
    resample,
)

PCM16_STEP = 1.0 / 32768


def test_reads_real_16k_wav(real_speech):
    path, _ = real_speech[0]
    wave = read_audio(path)
    native, rate = soundfile.read(path, dtype="float32")
    assert rate == 16_000 and wave.dtype == torch.float32
    assert torch.equal(wave, torch.from_numpy(native))


def test_resamples_real_8k_telephony_to_16k(asr_data):
    path = asr_data / "asterisk" / "auth-thankyou.wav"
    info = audio_info(path)
    assert info.sample_rate == 8_000
    wave = read_audio(path)
    assert wave.shape[0] == info.frames_at(16_000) == 2 * info.frames
    native = torch.from_numpy(soundfile.read(path, dtype="float32")[0])
    # Every other output sample sits on an input sample; band-limited interpolation keeps
    # them close (the rest of the signal energy lies between).
    assert torch.corrcoef(torch.stack([wave[::2], native]))[0, 1] > 0.99


def test_raw_pcm_needs_and_uses_a_stated_rate(asr_data):
    raw = asr_data / "pocketsphinx" / "goforward.raw"
    with pytest.raises(AudioError, match=r"goforward\.raw.*sample rate"):
        read_audio(raw)
    wave = read_audio(raw, raw_sample_rate=16_000)
    expected = np.frombuffer(raw.read_bytes(), dtype="<i2").astype(np.float32) / 32768
    assert torch.equal(wave, torch.from_numpy(expected))
    assert read_audio(raw, raw_sample_rate=8_000).shape[0] == 2 * expected.shape[0]


@pytest.mark.parametrize(
    ("fmt", "subtype", "suffix", "tol"),
    [
        ("FLAC", "PCM_16", ".flac", 0.0),
        ("OGG", "VORBIS", ".ogg", None),
        ("MP3", "MPEG_LAYER_III", ".mp3", None),
    ],
)
def test_compressed_formats_read_back(tmp_path, real_speech, fmt, subtype, suffix, tol):
    path, _ = real_speech[1]
    native = torch.from_numpy(soundfile.read(path, dtype="float32")[0])
    out = tmp_path / f"speech{suffix}"
    soundfile.write(out, native.numpy(), 16_000, format=fmt, subtype=subtype)
    wave = read_audio(out)
    if tol == 0.0:
        assert torch.equal(wave, native)
    else:  # lossy codecs: same length, same signal up to coding noise and codec delay
        assert abs(wave.shape[0] - native.shape[0]) < 2000
        n = min(wave.shape[0], native.shape[0])
        lag = max(range(0, 1200), key=lambda k: float(wave[k:n] @ native[: n - k]))
        corr = torch.corrcoef(torch.stack([wave[lag:n], native[: n - lag]]))[0, 1]
        assert corr > 0.9


def test_stereo_is_mixed_to_mono(tmp_path, real_speech):
    path, _ = real_speech[0]
    native = soundfile.read(path, dtype="float32")[0]
    stereo = np.stack([native, np.zeros_like(native)], axis=1)
    out = tmp_path / "stereo.wav"
    soundfile.write(out, stereo, 16_000, subtype="FLOAT")
    assert_close(read_audio(out), torch.from_numpy(native) / 2)


def test_offset_and_duration_select_a_segment(real_speech):
    path, _ = real_speech[0]
    whole = read_audio(path)
    part = read_audio(path, offset=0.5, duration=1.0)
    assert torch.equal(part, whole[8000:24000])


@pytest.mark.parametrize("rate", [8_000, 16_000, 22_050, 44_100])
def test_blocks_join_to_the_whole_file(tmp_path, real_speech, rate):
    path, _ = real_speech[0]
    native = torch.from_numpy(soundfile.read(path, dtype="float32")[0])
    source = resample(native, 16_000, rate)
    out = tmp_path / f"speech_{rate}.wav"
    soundfile.write(out, source.numpy(), rate, subtype="FLOAT")
    whole = read_audio(out)
    blocks = list(iter_audio_blocks(out, block_seconds=0.37))
    assert len(blocks) > 3
    joined = torch.cat(blocks)
    assert joined.shape == whole.shape
    assert_close(joined, whole, dtype=torch.float32)


# Bad input: every error names the file and what was expected.
def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match=r"nothere\.wav: file not found"):
        read_audio(tmp_path / "nothere.wav")


def test_empty_file(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty\.wav: empty file"):
        read_audio(empty)


@pytest.mark.parametrize("name", ["bad.wav", "evil.wav"])
def test_corrupt_real_files(asr_data, name):
    with pytest.raises(AudioError, match=rf"{name}: corrupt or truncated wav"):
        read_audio(asr_data / "pocketsphinx" / name)


def test_header_only_file(asr_data):
    with pytest.raises(AudioError, match=r"null\.wav: no audio samples"):
        read_audio(asr_data / "pocketsphinx" / "null.wav")


def test_absurd_sample_rate(asr_data):
    with pytest.raises(AudioError, match=r"awful\.wav: absurd sample rate 1092676 Hz"):
        read_audio(asr_data / "pocketsphinx" / "awful.wav")


def test_unknown_format(tmp_path):
    notes = tmp_path / "notes.xyz"
    notes.write_text("this is not audio at all, just words\n" * 20)
    with pytest.raises(AudioError, match=r"notes\.xyz: unknown audio format.*expected a wav"):
        read_audio(notes)


def test_nan_filled_file(tmp_path, real_speech):
    native = soundfile.read(real_speech[0][0], dtype="float32")[0].copy()
    native[12_000:12_100] = np.nan
    out = tmp_path / "nan.wav"
    soundfile.write(out, native, 16_000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav: contains NaN or infinite samples .*0\.750 s"):
        read_audio(out)
    with pytest.raises(AudioError, match="NaN"):
        list(iter_audio_blocks(out, block_seconds=0.5))


def test_directory_is_not_audio(tmp_path):
    with pytest.raises(AudioError, match="not a file"):
        read_audio(tmp_path)
