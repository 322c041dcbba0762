"""Room, noise, gain and phone-line degradations of the synthetic corpus, each measured on
signals whose right answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gfssm.tasks.asr.acoustics import (
    Acoustics,
    AcousticsConfig,
    apply_acoustics,
    coloured_noise,
    draw_acoustics,
    g711,
    room_impulse_response,
)

RATE = 16_000
EPS = torch.finfo(torch.float32).eps


def sine(freq: float, seconds: float = 1.0, amplitude: float = 0.3) -> torch.Tensor:
    t = torch.arange(int(RATE * seconds), dtype=torch.float64) / RATE
    return (amplitude * torch.sin(2 * math.pi * freq * t)).float()


def band_power(wave: torch.Tensor, low: float, high: float) -> float:
    spectrum = torch.fft.rfft(wave.double()).abs().square()
    freqs = torch.fft.rfftfreq(wave.shape[0], 1.0 / RATE)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum())


def test_noise_sits_at_the_drawn_snr():
    clean = sine(440.0)
    for snr in (0.0, 10.0, 30.0):
        noisy = apply_acoustics(clean, RATE, Acoustics(seed=1, snr_db=snr, noise="white"))
        added = noisy - clean
        measured = 10 * math.log10(float(clean.square().mean() / added.square().mean()))
        assert measured == pytest.approx(snr, abs=1e-3)


def test_noise_colours_have_their_spectral_slopes():
    rng = np.random.default_rng(0)
    for colour, octave_drop_db in (("white", 0.0), ("pink", 3.0), ("brown", 6.0)):
        noise = coloured_noise(RATE * 4, colour, rng)
        assert float(noise.square().mean()) == pytest.approx(1.0, rel=1e-4)
        # Power per octave band: white rises 3 dB an octave, pink is flat, brown falls 3 dB.
        low, high = band_power(noise, 500, 1000), band_power(noise, 1000, 2000)
        measured = 10 * math.log10(high / low)
        assert measured == pytest.approx(3.0 - octave_drop_db, abs=0.5)


def test_room_decays_by_60_db_in_rt60():
    rng = np.random.default_rng(0)
    for rt60 in (0.3, 0.8):
        rir = room_impulse_response(rt60, 0.0, RATE, rng)
        tail = rir[1:].double()
        # Schroeder's backward integral; the -5..-25 dB slope extrapolated to -60 dB (T20).
        decay = torch.flip(torch.cumsum(torch.flip(tail.square(), [0]), 0), [0])
        decay_db = 10 * torch.log10(decay / decay[0])
        t5 = int(torch.nonzero(decay_db <= -5)[0]) / RATE
        t25 = int(torch.nonzero(decay_db <= -25)[0]) / RATE
        assert 3 * (t25 - t5) == pytest.approx(rt60, rel=0.1)
        # The diffuse part carries the asked direct-to-reverberant energy ratio (0 dB here).
        assert float(tail.square().sum()) == pytest.approx(float(rir[0]) ** 2, rel=1e-5)


def test_reverberation_keeps_length_and_level():
    clean = sine(300.0)
    wet = apply_acoustics(clean, RATE, Acoustics(seed=2, rt60=0.6, direct_to_reverb_db=0.0))
    assert wet.shape == clean.shape
    assert float(wet.square().mean()) == pytest.approx(float(clean.square().mean()), rel=1e-3)
    assert not torch.allclose(wet, clean, atol=1e-2)


def test_telephone_line_keeps_only_the_voice_band():
    noise = coloured_noise(RATE * 2, "white", np.random.default_rng(1)) * 0.1
    for codec in ("pcm", "mulaw", "alaw"):
        line = apply_acoustics(noise, RATE, Acoustics(seed=0, codec=codec))
        assert line.shape == noise.shape
        voice = band_power(line, 500, 3000) / 2500
        # Above the 8 kHz line's 4 kHz Nyquist only the resampler's stop band leaks (under
        # -50 dB; the default resampler leaks -33 dB); below 300 Hz the high-pass cuts.
        assert band_power(line, 4200, 8000) / 3800 < voice * 1e-5
        assert band_power(line, 20, 120) / 100 < voice * 0.1


def test_g711_codecs_quantise_to_256_levels_with_bounded_relative_error():
    x = torch.linspace(-1.0, 1.0, 200_001)
    for codec in ("mulaw", "alaw"):
        y = g711(x, codec)
        assert torch.unique(y).numel() <= 256
        loud = x.abs() > 0.05
        # 8-bit companding: about 4 bits of mantissa, so a loud sample is within ~7%.
        assert float(((y - x).abs() / x.abs())[loud].max()) < 0.07
    with pytest.raises(ValueError, match="unknown codec"):
        g711(x, "opus")


def test_gain_clips_at_full_scale_and_speed_changes_duration():
    clean = sine(200.0, amplitude=0.5)
    loud = apply_acoustics(clean, RATE, Acoustics(seed=0, gain_db=20.0))
    assert float(loud.abs().max()) == 1.0 and float((loud.abs() == 1.0).float().mean()) > 0.5
    quiet = apply_acoustics(clean, RATE, Acoustics(seed=0, gain_db=-20.0))
    torch.testing.assert_close(quiet, clean * 0.1, rtol=4 * EPS, atol=4 * EPS)
    fast = apply_acoustics(clean, RATE, Acoustics(seed=0, speed=1.1))
    assert fast.shape[0] == pytest.approx(clean.shape[0] / 1.1, abs=2)


def test_draws_follow_the_seed_the_chances_and_the_speed_grid():
    config = AcousticsConfig(
        speed_factor=(0.9, 1.1),
        reverb_prob=0.5,
        noise_prob=0.25,
        telephone_prob=1.0,
        gain_db=(-6.0, 6.0),
    )
    draws = [draw_acoustics(config, np.random.default_rng([0, i])) for i in range(400)]
    again = [draw_acoustics(config, np.random.default_rng([0, i])) for i in range(400)]
    assert draws == again
    assert all(round(d.speed * 50) == pytest.approx(d.speed * 50, abs=1e-9) for d in draws)
    assert all(0.9 <= d.speed <= 1.1 and -6.0 <= d.gain_db <= 6.0 for d in draws)
    assert sum(d.rt60 is not None for d in draws) / 400 == pytest.approx(0.5, abs=0.08)
    assert sum(d.snr_db is not None for d in draws) / 400 == pytest.approx(0.25, abs=0.07)
    assert all(d.codec is not None for d in draws)
    assert draw_acoustics(AcousticsConfig(), np.random.default_rng(0)) is None
    with pytest.raises(ValueError, match="probability"):
        AcousticsConfig(noise_prob=1.5)
    with pytest.raises(ValueError, match="MIN <= MAX"):
        AcousticsConfig(gain_db=(6.0, -6.0))
