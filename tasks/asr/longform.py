"""Audio of any length in constant memory, without a voice activity detector.

The file is read block by block (:func:`gfssm.tasks.asr.audio.iter_audio_blocks`) and cut
into pieces of whole 20 ms frames:

- a causal model streams: each piece continues the previous one through the carried state,
  so the output equals a whole-file run;
- a bidirectional model sees overlapping windows: a chunk plus ``context`` seconds of audio
  on each side; only the chunk's own frames are kept. Every window's front-end frames equal
  the whole-file ones (each window gets the real samples before it as history), so only the
  encoder's reach is limited, to the window.

Decoding (greedy or beam search) is incremental, so memory grows with the text only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch

from gfssm.tasks.asr.decoding import BeamSearchDecoder, GreedyStream, Transcript
from gfssm.tasks.asr.model import CtcSpeechModel


@dataclass(frozen=True)
class ChunkingConfig:
    """chunk_seconds: audio per piece (a window's centre); context_seconds: extra audio on
    each side of a bidirectional window; both are rounded to whole frames."""

    chunk_seconds: float = 20.0
    context_seconds: float = 2.0


DEFAULT_CHUNKING = ChunkingConfig()


@dataclass
class LongformStats:
    """What the run looked at: ``windows`` encoder calls, the longest ``max_window_samples``
    given to the model, and the ``samples`` of 16 kHz audio in the file."""

    windows: int = 0
    max_window_samples: int = 0
    samples: int = 0


def rechunk(blocks: Iterable[torch.Tensor], size: int) -> Iterator[torch.Tensor]:
    """Consecutive pieces of exactly ``size`` samples (the last may be shorter)."""
    pending: list[torch.Tensor] = []
    held = 0
    for block in blocks:
        pending.append(block)
        held += block.shape[0]
        if held >= size:
            joined = torch.cat(pending)
            cut = held - held % size
            yield from joined[:cut].split(size)
            pending, held = [joined[cut:]], held - cut
    if held:
        yield torch.cat(pending)


def _round_frames(seconds: float, frame_samples: int, rate: int) -> int:
    return max(1, round(seconds * rate / frame_samples)) * frame_samples


@torch.no_grad()
def decode_long_audio(
    model: CtcSpeechModel,
    blocks: Iterable[torch.Tensor],
    *,
    decoder: BeamSearchDecoder | None = None,
    vocabulary=None,
    chunking: ChunkingConfig = DEFAULT_CHUNKING,
    stats: LongformStats | None = None,
) -> Transcript:
    """Transcribe the 16 kHz audio arriving as ``blocks`` ((n_i,) tensors) with ``model``
    (in eval mode) in pieces; ``stats`` (if given) records the work done."""
    from gfssm.tasks.asr.text import CharVocabulary

    stats = stats if stats is not None else LongformStats()
    param = next(model.parameters())
    device, dtype = param.device, param.dtype
    rate, frame = model.sample_rate, model.frame_samples
    chunk = _round_frames(chunking.chunk_seconds, frame, rate)
    if decoder is not None:
        decoder.begin()
    greedy = GreedyStream(vocabulary or CharVocabulary(), model.frame_seconds)

    def emit(log_probs: torch.Tensor) -> None:
        if decoder is not None:
            decoder.step(log_probs.cpu())
        else:
            greedy.feed(log_probs)

    pieces = rechunk(blocks, chunk)
    if not model.bidirectional:
        state = model.start_stream(1)
        for piece in pieces:
            stats.samples += piece.shape[0]
            stats.windows += 1
            stats.max_window_samples = max(stats.max_window_samples, piece.shape[0])
            emit(model.stream(piece.to(device, dtype)[None], state)[0])
    else:
        _windows(model, pieces, chunk, chunking, stats, emit, device, dtype)
    return decoder.finish() if decoder is not None else greedy.finish()


def _windows(model, pieces, chunk, chunking, stats, emit, device, dtype) -> None:
    """Bidirectional windows over ``pieces`` (each ``chunk`` samples, the last maybe less):
    window k is [k*chunk - context, (k+1)*chunk + context) with the front end's history
    before it; the frames of [k*chunk, (k+1)*chunk) are emitted."""
    frame, history_len = model.frame_samples, model.frontend.context_samples
    context = _round_frames(chunking.context_seconds, frame, model.sample_rate)
    keep_before = context + history_len
    buffer = torch.zeros(0)
    buffer_start = 0  # absolute sample index of buffer[0]
    chunk_start = 0
    ended = False
    iterator = iter(pieces)
    while True:
        # Read until the window's right context is in, or the audio ends.
        while not ended and buffer_start + buffer.shape[0] < chunk_start + chunk + context:
            piece = next(iterator, None)
            if piece is None:
                ended = True
            else:
                buffer = torch.cat([buffer, piece])
                stats.samples += piece.shape[0]
        end_of_audio = buffer_start + buffer.shape[0]
        if chunk_start >= end_of_audio:
            break
        lo = max(0, chunk_start - context)
        hi = min(end_of_audio, chunk_start + chunk + context)
        window = buffer[lo - buffer_start : hi - buffer_start]
        h_lo = max(0, lo - history_len)
        history = buffer[h_lo - buffer_start : lo - buffer_start]
        history = torch.nn.functional.pad(history, (history_len - history.shape[0], 0))
        log_probs = model.forward_window(
            window.to(device, dtype)[None], history.to(device, dtype)[None]
        )[0]
        first = (chunk_start - lo) // frame
        count = -(-(min(chunk_start + chunk, end_of_audio) - chunk_start) // frame)
        emit(log_probs[first : first + count])
        stats.windows += 1
        stats.max_window_samples = max(stats.max_window_samples, window.shape[0])
        chunk_start += chunk
        # Drop what no later window needs.
        drop = max(0, chunk_start - keep_before - buffer_start)
        buffer, buffer_start = buffer[drop:], buffer_start + drop
