"""What a room, a microphone and a phone line do to clean synthetic speech, baked into a
training corpus by ``gfssm data synth``: speed, room reverberation, additive noise at a random
SNR, gain (with the clipping a hot input brings) and the telephone channel (300-3400 Hz band at
8 kHz through a G.711 mu-law or A-law codec, or linear PCM).

Each utterance's settings are drawn at planning time from the corpus seed and the utterance's
index (:func:`draw_acoustics`), so a corpus is the same whatever order its utterances are
synthesised in, and the manifest records what was done to every file.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torchaudio.functional as AF

from gfssm.tasks.asr.augment import change_speed

NOISE_COLOURS = ("white", "pink", "brown")
CODECS = ("pcm", "mulaw", "alaw")


class AcousticsValueError(ValueError):
    """A bad :class:`AcousticsConfig` field: ``field``, its ``value`` and the ``problem``."""

    def __init__(self, field: str, value: float | tuple[float, float], problem: str) -> None:
        self.field, self.value, self.problem = field, value, problem
        super().__init__(f"{field}={value}: {problem}")


@dataclass(frozen=True)
class AcousticsConfig:
    """Chances and ranges (inclusive) of each degradation; all off by default.

    speed_factor: playback speed range (1.1 = 10% faster, pitch moves with it; drawn in
    steps of 0.02);
    reverb_rt60: seconds for a room's reverberation to decay by 60 dB;
    noise_snr_db: signal-to-noise ratio of white, pink or brown noise;
    gain_db: level change, clipped at full scale like an overdriven input."""

    speed_factor: tuple[float, float] = (1.0, 1.0)
    reverb_prob: float = 0.0
    reverb_rt60: tuple[float, float] = (0.2, 0.9)
    noise_prob: float = 0.0
    noise_snr_db: tuple[float, float] = (5.0, 35.0)
    telephone_prob: float = 0.0
    gain_db: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        for name in ("reverb_prob", "noise_prob", "telephone_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise AcousticsValueError(name, value, "expected a probability in [0, 1]")
        for name in ("speed_factor", "reverb_rt60", "noise_snr_db", "gain_db"):
            low, high = getattr(self, name)
            if low > high:
                raise AcousticsValueError(name, (low, high), "expected MIN <= MAX")
        for name in ("speed_factor", "reverb_rt60"):
            if getattr(self, name)[0] <= 0:
                raise AcousticsValueError(name, getattr(self, name), "expected positive values")

    @property
    def active(self) -> bool:
        return (
            self.speed_factor != (1.0, 1.0)
            or self.gain_db != (0.0, 0.0)
            or max(self.reverb_prob, self.noise_prob, self.telephone_prob) > 0
        )


@dataclass(frozen=True)
class Acoustics:
    """What is done to one utterance (None: that step is skipped); ``seed`` drives the
    random room and noise."""

    seed: int
    speed: float = 1.0
    rt60: float | None = None
    direct_to_reverb_db: float | None = None
    snr_db: float | None = None
    noise: str | None = None
    gain_db: float = 0.0
    codec: str | None = None

    def describe(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def draw_acoustics(config: AcousticsConfig, rng: np.random.Generator) -> Acoustics | None:
    """One utterance's settings, or None when nothing is to be done."""
    if not config.active:
        return None
    seed = int(rng.integers(0, 2**31 - 1))
    # On a 2% grid: the resampling ratio stays a small fraction (51/50), whose filter bank is
    # tiny; an arbitrary factor such as 1.0731 costs a 537/500 bank, seconds per utterance.
    low, high = config.speed_factor
    speed = min(max(round(float(rng.uniform(low, high)) * 50) / 50, low), high)
    rt60 = drr = snr = noise = codec = None
    if rng.random() < config.reverb_prob:
        rt60 = float(rng.uniform(*config.reverb_rt60))
        drr = float(rng.uniform(-3.0, 12.0))
    if rng.random() < config.noise_prob:
        snr = float(rng.uniform(*config.noise_snr_db))
        noise = str(rng.choice(NOISE_COLOURS))
    gain = float(rng.uniform(*config.gain_db))
    if rng.random() < config.telephone_prob:
        codec = str(rng.choice(CODECS))
    return Acoustics(seed, speed, rt60, drr, snr, noise, gain, codec)


def room_impulse_response(
    rt60: float, direct_to_reverb_db: float, rate: int, rng: np.random.Generator
) -> torch.Tensor:
    """(n,) a synthetic room: the direct path, then exponentially decaying diffuse noise
    (-60 dB after ``rt60`` s) whose energy sits ``direct_to_reverb_db`` below the direct path."""
    n = max(2, int(rate * min(rt60, 2.0)))
    t = torch.arange(n, dtype=torch.float32) / rate
    tail = torch.from_numpy(rng.standard_normal(n).astype(np.float32))
    tail = tail * torch.exp(-3.0 * math.log(10.0) * t / rt60)
    tail[: int(0.002 * rate)] = 0.0  # the first reflection arrives a few ms after the direct path
    tail = tail / tail.square().sum().sqrt().clamp_min(1e-8) * 10.0 ** (-direct_to_reverb_db / 20)
    tail[0] = 1.0
    return tail


def coloured_noise(n: int, colour: str, rng: np.random.Generator) -> torch.Tensor:
    """(n,) unit-power noise with a 1/f^0 (white), 1/f (pink) or 1/f^2 (brown) spectrum."""
    white = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.fft.rfftfreq(n), 1.0 / n)
    exponent = {"white": 0.0, "pink": 0.5, "brown": 1.0}[colour]
    noise = np.fft.irfft(white / f**exponent, n).astype(np.float32)
    return torch.from_numpy(noise / max(float(np.sqrt(np.mean(noise**2))), 1e-8))


def g711(wave: torch.Tensor, codec: str) -> torch.Tensor:
    """(n,) in [-1, 1] through an 8-bit companding codec and back (``pcm``: unchanged)."""
    if codec == "pcm":
        return wave
    x = wave.clamp(-1.0, 1.0)
    if codec == "mulaw":
        return AF.mu_law_decoding(AF.mu_law_encoding(x, 256), 256)
    if codec != "alaw":
        raise ValueError(f"unknown codec {codec!r}; expected one of {', '.join(CODECS)}")
    a = 87.6
    ax = x.abs()
    small = ax < 1.0 / a
    y = torch.where(small, a * ax, 1.0 + torch.log((a * ax).clamp_min(1.0))) / (1.0 + math.log(a))
    y = torch.round(y * 127.0) / 127.0  # 7 bits of magnitude plus the sign: 8 bits a sample
    back = torch.where(
        y < 1.0 / (1.0 + math.log(a)),
        y * (1.0 + math.log(a)) / a,
        torch.exp(y * (1.0 + math.log(a)) - 1.0) / a,
    )
    return torch.sign(x) * back


def telephone_line(wave: torch.Tensor, rate: int, codec: str) -> torch.Tensor:
    """(n,) through a telephone channel: 8 kHz, 300-3400 Hz, ``codec``; back at ``rate``."""
    n = wave.shape[0]
    # A long Kaiser-windowed sinc: the default resampler lets images above 4 kHz through at
    # about -33 dB, enough for a model to hear that the line is not really narrow.
    sharp = dict(lowpass_filter_width=64, rolloff=0.95, resampling_method="sinc_interp_kaiser")
    narrow = AF.resample(wave, rate, 8_000, **sharp, beta=14.77)
    narrow = AF.lowpass_biquad(AF.highpass_biquad(narrow, 8_000, 300.0), 8_000, 3_400.0)
    narrow = g711(narrow, codec)
    return AF.resample(narrow, 8_000, rate, **sharp, beta=14.77)[:n]


def apply_acoustics(wave: torch.Tensor, rate: int, acoustics: Acoustics) -> torch.Tensor:
    """(n,) clean speech -> (n',) as heard through the room, microphone and line described
    (n' = n / speed); the result stays within [-1, 1]."""
    rng = np.random.default_rng(acoustics.seed)
    wave = change_speed(wave, acoustics.speed, rate)
    level = wave.square().mean().sqrt().clamp_min(1e-6)
    if acoustics.rt60 is not None:
        rir = room_impulse_response(acoustics.rt60, acoustics.direct_to_reverb_db, rate, rng)
        wave = AF.fftconvolve(wave, rir)[: wave.shape[0]]
        wave = wave * level / wave.square().mean().sqrt().clamp_min(1e-6)
    if acoustics.snr_db is not None:
        noise = coloured_noise(wave.shape[0], acoustics.noise, rng)
        wave = wave + noise * level * 10.0 ** (-acoustics.snr_db / 20.0)
    wave = (wave * 10.0 ** (acoustics.gain_db / 20.0)).clamp(-1.0, 1.0)
    if acoustics.codec is not None:
        wave = telephone_line(wave, rate, acoustics.codec)
    return wave.clamp(-1.0, 1.0)
