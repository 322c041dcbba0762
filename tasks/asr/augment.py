"""Training augmentation, drawn from a given random generator so that a batch is a pure
function of (seed, step): speed perturbation, telephone band-limiting, background noise,
and the time/channel masks the front end applies (SpecAugment on raw-waveform features)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gfssm.tasks.asr.audio import resample


@dataclass(frozen=True)
class AugmentConfig:
    """speed_factors: choices (1.1 = 10% faster); telephone_prob: chance of an 8 kHz round
    trip; noise_prob / noise_snr_db: white noise at an SNR drawn from the range;
    time_masks: masks per 5 s of audio, each up to time_mask_frames 20 ms frames;
    channel_masks: masks of up to channel_mask_width filterbank channels."""

    speed_factors: tuple[float, ...] = (1.0,)
    telephone_prob: float = 0.0
    noise_prob: float = 0.0
    noise_snr_db: tuple[float, float] = (15.0, 40.0)
    time_masks: float = 0.0
    time_mask_frames: int = 5
    channel_masks: int = 0
    channel_mask_width: int = 8


def change_speed(wave: torch.Tensor, factor: float, rate: int) -> torch.Tensor:
    """(n,) -> (~n / factor,): played ``factor`` times faster (pitch moves with it)."""
    if factor == 1.0:
        return wave
    return resample(wave, round(rate * factor), rate)


def telephone_band(wave: torch.Tensor, rate: int, narrow_rate: int = 8_000) -> torch.Tensor:
    """(n,) through an 8 kHz channel and back: everything above 4 kHz is gone."""
    n = wave.shape[0]
    return resample(resample(wave, rate, narrow_rate), narrow_rate, rate)[:n]


def add_noise(wave: torch.Tensor, snr_db: float, rng: np.random.Generator) -> torch.Tensor:
    power = wave.square().mean().clamp_min(1e-10)
    noise = torch.from_numpy(rng.standard_normal(wave.shape[0]).astype(np.float32))
    return wave + noise * torch.sqrt(power / 10.0 ** (snr_db / 10.0))


def augment_waveform(
    wave: torch.Tensor, config: AugmentConfig, rng: np.random.Generator, rate: int
) -> torch.Tensor:
    """One utterance (n,) -> augmented (n',)."""
    factor = float(rng.choice(config.speed_factors))
    wave = change_speed(wave, factor, rate)
    if config.telephone_prob and rng.random() < config.telephone_prob:
        wave = telephone_band(wave, rate)
    if config.noise_prob and rng.random() < config.noise_prob:
        wave = add_noise(wave, float(rng.uniform(*config.noise_snr_db)), rng)
    return wave


def feature_masks(
    frame_lengths: list[int],
    n_filters: int,
    config: AugmentConfig,
    rng: np.random.Generator,
    frames_per_second: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """time_mask (b, T) and channel_mask (b, F) booleans, True where masked; time masks lie
    inside each utterance's own frames."""
    b, T = len(frame_lengths), max(frame_lengths)
    time_mask = torch.zeros(b, T, dtype=torch.bool)
    channel_mask = torch.zeros(b, n_filters, dtype=torch.bool)
    for i, length in enumerate(frame_lengths):
        count = int(config.time_masks * length / (5.0 * frames_per_second) + rng.random())
        for _ in range(count if config.time_mask_frames > 0 else 0):
            width = int(rng.integers(1, config.time_mask_frames + 1))
            start = int(rng.integers(0, max(1, length - width)))
            time_mask[i, start : min(length, start + width)] = True
        for _ in range(config.channel_masks):
            width = int(rng.integers(1, config.channel_mask_width + 1))
            start = int(rng.integers(0, max(1, n_filters - width)))
            channel_mask[i, start : start + width] = True
    return time_mask, channel_mask
