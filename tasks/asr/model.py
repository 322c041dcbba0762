"""The speech recogniser: raw-waveform front end -> GFSSM encoder -> CTC head over characters.

Offline models use the bidirectional encoder; streaming models the causal one, which also
runs piece by piece with a carried :class:`StreamState` (front-end history + GFSSM cache)
and gives the same output as a whole-file run.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gfssm import (
    GFSSMCache,
    GFSSMConfig,
    GFSSMEncoder,
)
from gfssm.tasks.asr.frontend import WaveformFrontend


@dataclass
class StreamState:
    """What a causal model carries between pieces of one batch of streams.

    history: (b, context_samples) the last raw samples; cache: the encoder's GFSSM cache;
    frames: 20 ms frames emitted so far."""

    history: torch.Tensor
    cache: GFSSMCache
    frames: int = 0


class CtcSpeechModel(nn.Module):
    """audio (b, n) at 16 kHz -> CTC log-probabilities (b, T, V), T = ceil(n / 320)."""

    def __init__(
        self,
        config: GFSSMConfig,
        *,
        vocab_size: int,
        bidirectional: bool = True,
        n_filters: int = 64,
        frontend_init: str = "gabor",
        sample_rate: int = 16_000,
    ) -> None:
        super().__init__()
        self.config = config
        self.bidirectional = bidirectional
        self.sample_rate = sample_rate
        self.frontend = WaveformFrontend(
            config.d_model, n_filters=n_filters, sample_rate=sample_rate, init=frontend_init
        )
        # The encoder takes frames, not token ids: its own vocabulary is empty.
        self.encoder = GFSSMEncoder(config.replace(vocab_size=0), bidirectional=bidirectional)
        self.head = nn.Linear(config.d_model, vocab_size)

    @property
    def frame_samples(self) -> int:
        return self.frontend.frame_samples

    @property
    def frame_seconds(self) -> float:
        return self.frontend.frame_samples / self.sample_rate

    def forward(
        self,
        audio: torch.Tensor,
        lengths: torch.Tensor | None = None,
        *,
        time_mask: torch.Tensor | None = None,
        channel_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """audio (b, n), lengths (b,) valid samples -> log_probs (b, T, V) and frame lengths
        (b,). Positions past a sequence's frames are zero (no probability mass)."""
        frames, frame_lengths = self.frontend(
            audio, lengths, time_mask=time_mask, channel_mask=channel_mask
        )
        hidden = self.encoder(frames, lengths=frame_lengths)  # right-padding fast path
        log_probs = F.log_softmax(self.head(hidden).float(), dim=-1)
        valid = torch.arange(log_probs.shape[1], device=audio.device)[None] < frame_lengths[:, None]
        return log_probs * valid[..., None], frame_lengths

    def forward_window(self, audio: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """A window cut from longer audio: audio (b, n) with the ``context_samples`` before
        it as history (b, context) -> log_probs (b, ceil(n / 320), V). The encoder sees the
        window only; its front-end frames equal those of the whole file."""
        frames, _ = self.frontend(audio, history=history)
        return F.log_softmax(self.head(self.encoder(frames)).float(), dim=-1)

    # Streaming (causal encoder only) -------------------------------------------------
    def start_stream(self, batch_size: int = 1) -> StreamState:
        """An empty stream state for ``batch_size`` parallel streams."""
        if self.bidirectional:
            raise ValueError(
                "a bidirectional model cannot stream; transcribe long audio with overlapping "
                "chunks instead (gfssm.tasks.asr.longform)"
            )
        ref = next(self.parameters())
        history = ref.new_zeros(batch_size, self.frontend.context_samples)
        return StreamState(history, self.encoder.allocate_cache(batch_size))

    def stream(self, audio: torch.Tensor, state: StreamState) -> torch.Tensor:
        """The next piece of every stream: audio (b, n) with n a multiple of
        ``frame_samples`` (except a stream's last piece, which is zero-padded) ->
        log_probs (b, ceil(n / 320), V). Advances ``state`` in place."""
        frames, _ = self.frontend(audio, history=state.history)
        n = audio.shape[1]
        keep = min(n, state.history.shape[1])
        state.history = torch.cat([state.history[:, keep:], audio[:, n - keep :]], dim=1)
        hidden = self.encoder(frames, cache=state.cache)
        state.frames += frames.shape[1]
        return F.log_softmax(self.head(hidden).float(), dim=-1)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
