"""The raw-waveform front end: strided 1-D convolutions from 16 kHz samples to 20 ms frames.

1. A learned analysis filterbank: ``Conv1d(1, 2F, 400, stride=160)`` (25 ms windows every
   10 ms) whose filter pairs start as Hann-windowed cosine/sine (Gabor) filters at
   mel-spaced centre frequencies; the energy of each pair, log-compressed, gives F channels.
2. A per-frame LayerNorm over the channels: a change of gain shifts every log energy
   equally, so this makes the model insensitive to loudness without looking across frames
   (which would break streaming).
3. ``Conv1d(F, D, 3, stride=2)`` + GELU + a 1x1 projection: 20 ms frames of width D.

Frames are left-aligned with no look-ahead: frame ``j`` ends at sample ``320 (j + 1)`` and
sees the ``context_samples`` before its first hop. Running on a whole file or on 320-sample
aligned pieces carrying that history therefore gives the same frames.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def mel_centres(n_filters: int, sample_rate: int, low_hz: float = 60.0) -> torch.Tensor:
    """(F,) centre frequencies evenly spaced on the mel scale up to ~Nyquist."""
    high_hz = 0.48 * sample_rate

    def mel(f):
        return 2595.0 * math.log10(1.0 + f / 700.0)

    mels = torch.linspace(mel(low_hz), mel(high_hz), n_filters, dtype=torch.float64)
    return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)


def gabor_filters(n_filters: int, window: int, sample_rate: int) -> torch.Tensor:
    """(2F, 1, window) weights: cosine then sine of each mel-spaced centre, Hann-windowed and
    scaled so that a unit sinusoid at the centre gives an energy of about 1."""
    t = torch.arange(window, dtype=torch.float64)
    hann = torch.hann_window(window, periodic=False, dtype=torch.float64)
    phase = 2 * math.pi * mel_centres(n_filters, sample_rate)[:, None] * t[None, :] / sample_rate
    scale = 2.0 / hann.sum()
    weights = torch.stack([torch.cos(phase), torch.sin(phase)], dim=1) * hann * scale
    return weights.reshape(2 * n_filters, 1, window).float()


class WaveformFrontend(nn.Module):
    """audio (b, n) at 16 kHz -> frames (b, T, D) with ``T = ceil(n / frame_samples)``."""

    def __init__(
        self,
        d_model: int,
        *,
        n_filters: int = 64,
        window: int = 400,
        hop: int = 160,
        stride: int = 2,
        kernel: int = 3,
        sample_rate: int = 16_000,
        init: str = "gabor",
    ) -> None:
        super().__init__()
        if window < hop:
            raise ValueError(f"frontend window={window} must be >= hop={hop}")
        self.n_filters, self.window, self.hop, self.stride, self.kernel = (
            n_filters,
            window,
            hop,
            stride,
            kernel,
        )
        self.filters = nn.Conv1d(1, 2 * n_filters, window, stride=hop, bias=False)
        if init == "gabor":
            with torch.no_grad():
                self.filters.weight.copy_(gabor_filters(n_filters, window, sample_rate))
        elif init != "random":
            raise ValueError(f"frontend init={init!r}; expected 'gabor' or 'random'")
        self.norm = nn.LayerNorm(n_filters)
        self.downsample = nn.Conv1d(n_filters, d_model, kernel, stride=stride)
        self.proj = nn.Linear(d_model, d_model)

    @property
    def frame_samples(self) -> int:
        """Samples per output frame (320 = 20 ms at 16 kHz)."""
        return self.hop * self.stride

    @property
    def context_samples(self) -> int:
        """History before a frame's own samples that it sees (400 by default)."""
        return self.hop * (self.kernel - 1) + self.window - self.frame_samples

    def num_frames(self, samples: torch.Tensor | int) -> torch.Tensor | int:
        if isinstance(samples, int):
            return -(-samples // self.frame_samples)
        return torch.div(
            samples + self.frame_samples - 1, self.frame_samples, rounding_mode="floor"
        )

    def log_energies(self, extended: torch.Tensor) -> torch.Tensor:
        """extended (b, context + m * frame_samples) -> normalised log energies (b, 2m+k-2, F)."""
        pairs = self.filters(extended[:, None, :])  # (b, 2F, n1)
        energy = pairs[:, : self.n_filters].square() + pairs[:, self.n_filters :].square()
        return self.norm(torch.log(energy + 1e-6).transpose(1, 2))

    def frames_from_features(self, features: torch.Tensor) -> torch.Tensor:
        """(b, n1, F) log energies -> (b, T, D) frames."""
        hidden = F.gelu(self.downsample(features.transpose(1, 2)))
        return self.proj(hidden.transpose(1, 2))

    def extend(self, audio: torch.Tensor, history: torch.Tensor | None) -> torch.Tensor:
        """Prepend ``history`` (b, context) or zeros, pad right to whole frames."""
        b, n = audio.shape
        pad = self.num_frames(n) * self.frame_samples - n
        if history is None:
            history = audio.new_zeros(b, self.context_samples)
        return torch.cat([history, F.pad(audio, (0, pad))], dim=1)

    def forward(
        self,
        audio: torch.Tensor,
        lengths: torch.Tensor | None = None,
        *,
        history: torch.Tensor | None = None,
        time_mask: torch.Tensor | None = None,
        channel_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """audio: (b, n); lengths: (b,) valid samples (padding after them is ignored);
        history: (b, context_samples) audio before ``audio`` (streaming), else zeros;
        time_mask (b, T) / channel_mask (b, F): True where features are masked (training).
        Returns frames (b, T, D) and frame lengths (b,)."""
        b, n = audio.shape
        if lengths is None:
            lengths = torch.full((b,), n, dtype=torch.long, device=audio.device)
        valid = torch.arange(n, device=audio.device)[None, :] < lengths[:, None]
        audio = audio.masked_fill(~valid, 0.0)  # whatever padding holds never reaches a frame
        features = self.log_energies(self.extend(audio, history))
        if time_mask is not None or channel_mask is not None:
            features = self.apply_masks(features, time_mask, channel_mask)
        frames = self.frames_from_features(features)
        return frames, self.num_frames(lengths)

    def apply_masks(self, features, time_mask, channel_mask) -> torch.Tensor:
        """Zero masked channels, and masked 20 ms frames (each is ``stride`` 10 ms features,
        the first ``kernel - stride`` features being history)."""
        if channel_mask is not None:
            features = features.masked_fill(channel_mask[:, None, :], 0.0)
        if time_mask is not None:
            lead = self.kernel - self.stride
            per_feature = time_mask.repeat_interleave(self.stride, dim=1)
            per_feature = F.pad(
                per_feature, (lead, features.shape[1] - lead - per_feature.shape[1])
            )
            features = features.masked_fill(per_feature[:, :, None], 0.0)
        return features
