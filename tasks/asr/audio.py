"""Reading audio: any format libsndfile knows (wav, flac, ogg, mp3) or headerless PCM with a
stated rate, mixed to mono and resampled to the model's rate.

Every failure is an :class:`AudioError` naming the file and saying what was expected.
Long files are read block by block (:func:`iter_audio_blocks`) so memory never grows with
the file; resampling is done with enough margin around each block that the blocks joined
equal resampling the whole file.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio.functional as AF

from gfssm.tasks.jobs import TaskInputError

TARGET_RATE = 16_000
MIN_RATE, MAX_RATE = 1_000, 384_000
RAW_SUFFIXES = frozenset({".raw", ".pcm"})
KNOWN_SUFFIXES = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".au"})
EXPECTED = "a wav, flac, ogg or mp3 file, or headerless PCM (.raw/.pcm) with a stated rate"
# Input samples on each side of a block that the resampling filter may reach (its half
# width is about 6 zero crossings of the lower rate, far below this).
RESAMPLE_MARGIN_SECONDS = 0.01


class AudioError(TaskInputError):
    """An audio file cannot be used; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class AudioInfo:
    """What the header says: native ``sample_rate``, ``frames`` and ``channels``."""

    path: str
    sample_rate: int
    frames: int
    channels: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate

    def frames_at(self, rate: int) -> int:
        """Length after resampling to ``rate`` (as torchaudio's resample gives it)."""
        return resampled_length(self.frames, self.sample_rate, rate)


def resampled_length(frames: int, orig: int, new: int) -> int:
    return frames if orig == new else math.ceil(new * frames / orig)


def open_audio(path: str | Path, *, raw_sample_rate: int | None = None) -> soundfile.SoundFile:
    """Open ``path`` for reading after checking it exists, is not empty, is decodable and has
    a sensible rate. Headerless ``.raw``/``.pcm`` files are 16-bit little-endian mono at
    ``raw_sample_rate``."""
    path = Path(path)
    if not path.exists():
        raise AudioError(path, "file not found")
    if not path.is_file():
        raise AudioError(path, f"not a file; expected {EXPECTED}")
    if path.stat().st_size == 0:
        raise AudioError(path, f"empty file (0 bytes); expected {EXPECTED}")
    suffix = path.suffix.lower()
    try:
        if suffix in RAW_SUFFIXES:
            if raw_sample_rate is None:
                raise AudioError(
                    path,
                    "headerless PCM has no sample rate; state it (raw_sample_rate=16000, or "
                    "a 'sample_rate' field in the manifest)",
                )
            check_rate(path, raw_sample_rate)
            handle = soundfile.SoundFile(
                path,
                samplerate=int(raw_sample_rate),
                channels=1,
                subtype="PCM_16",
                endian="LITTLE",
                format="RAW",
            )
        else:
            handle = soundfile.SoundFile(path)
    except soundfile.LibsndfileError as err:
        if suffix in KNOWN_SUFFIXES:
            raise AudioError(path, f"corrupt or truncated {suffix[1:]} file ({err})") from err
        raise AudioError(
            path, f"unknown audio format (suffix {suffix or 'none'!r}); expected {EXPECTED}"
        ) from err
    try:
        check_rate(path, handle.samplerate)
        if suffix not in RAW_SUFFIXES:
            check_wav_layout(path)
        if handle.frames == 0:
            raise AudioError(path, "no audio samples (the header announces 0 frames)")
    except AudioError:
        handle.close()
        raise
    return handle


def _printable_chunk_id(chunk_id: bytes) -> bool:
    return len(chunk_id) == 4 and all(32 <= c < 127 for c in chunk_id)


def check_wav_layout(path: str | Path) -> None:
    """Compare what a RIFF/WAVE header promises with what the file holds (libsndfile
    silently reads only what is there). Raises :class:`AudioError` when the data chunk is
    longer than the file (truncated), announces no audio although audio follows, is not a
    whole number of frames, or is followed by more audio-sized data that is no chunk.
    Files that are not RIFF/WAVE are left to libsndfile."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return
        pos, byte_rate, block_align = 12, 0, 0
        while pos + 8 <= size:
            handle.seek(pos)
            chunk_id, chunk_size = struct.unpack("<4sI", handle.read(8))
            if chunk_id == b"fmt ":
                fmt = handle.read(min(chunk_size, 16))
                if len(fmt) >= 14:
                    byte_rate, block_align = struct.unpack_from("<IH", fmt, 8)
            elif chunk_id == b"data":
                _check_data_chunk(path, size, pos + 8, chunk_size, byte_rate, block_align, handle)
                return
            pos += 8 + chunk_size + (chunk_size & 1)


def _seconds(nbytes: int, byte_rate: int) -> str:
    return f"{nbytes / byte_rate:.2f} s" if byte_rate else f"{nbytes} bytes"


def _check_data_chunk(path, size, start, length, byte_rate, block_align, handle) -> None:
    held = size - start
    if length == 0xFFFFFFFF:  # a streaming writer's "unknown length": libsndfile reads all
        return
    if length == 0 and held >= max(block_align, 1) * 16:
        raise AudioError(
            path,
            f"header and data disagree: the header announces no audio but {_seconds(held, byte_rate)} "
            f"of data follow (a length the writer never filled in?); re-encode the file",
        )
    if length > held:
        raise AudioError(
            path,
            f"truncated: the header promises {_seconds(length, byte_rate)} of audio, the file "
            f"holds {_seconds(held, byte_rate)} ({held} of {length} data bytes); the file was cut "
            f"off (an interrupted copy or download?)",
        )
    if block_align and length % block_align:
        raise AudioError(
            path,
            f"header and data disagree: the data chunk has {length} bytes, not a whole number of "
            f"{block_align}-byte frames",
        )
    rest = start + length + (length & 1)
    extra = size - rest
    if extra >= max(1024, byte_rate // 10):
        handle.seek(rest)
        chunk_id, chunk_size = struct.unpack("<4sI", handle.read(8))
        if not _printable_chunk_id(chunk_id) or chunk_size > extra - 8:
            raise AudioError(
                path,
                f"header and data disagree: the header says {_seconds(length, byte_rate)} of "
                f"audio but {_seconds(size - start, byte_rate)} of data follow it; re-encode "
                f"the file",
            )


def check_rate(path: str | Path, rate: int) -> None:
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioError(
            path, f"absurd sample rate {rate} Hz; expected {MIN_RATE} to {MAX_RATE} Hz"
        )


def audio_info(path: str | Path, *, raw_sample_rate: int | None = None) -> AudioInfo:
    """The header of ``path``, validated as :func:`open_audio` does."""
    with open_audio(path, raw_sample_rate=raw_sample_rate) as handle:
        return AudioInfo(str(path), handle.samplerate, handle.frames, handle.channels)


def to_mono(block: np.ndarray) -> np.ndarray:
    """(n, channels) float -> (n,) float32: the mean of the channels."""
    return block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]


def read_frames(
    handle: soundfile.SoundFile, path: str | Path, start: int, count: int
) -> np.ndarray:
    """Native-rate mono float32 frames ``[start, start + count)``; NaN/inf are errors."""
    handle.seek(start)
    block = handle.read(count, dtype="float32", always_2d=True)
    if block.shape[0] < count:
        rate = handle.samplerate
        raise AudioError(
            path,
            f"truncated: the header promises {handle.frames / rate:.2f} s of audio, only "
            f"{(start + block.shape[0]) / rate:.2f} s could be read",
        )
    mono = to_mono(block)
    if not np.isfinite(mono).all():
        where = start + int(np.flatnonzero(~np.isfinite(mono))[0])
        raise AudioError(
            path,
            f"contains NaN or infinite samples (first at {where / handle.samplerate:.3f} s); "
            f"expected finite audio",
        )
    return mono


def resample(wave: torch.Tensor, orig: int, new: int) -> torch.Tensor:
    """(..., n) at ``orig`` Hz -> (..., resampled_length(n)) at ``new`` Hz."""
    if orig == new:
        return wave
    return AF.resample(wave, orig, new)


def read_audio(
    path: str | Path,
    *,
    offset: float = 0.0,
    duration: float | None = None,
    raw_sample_rate: int | None = None,
    target_rate: int = TARGET_RATE,
) -> torch.Tensor:
    """The audio of ``path`` (optionally a segment from ``offset`` seconds lasting
    ``duration``) as a (n,) float32 tensor, mono, at ``target_rate``."""
    with open_audio(path, raw_sample_rate=raw_sample_rate) as handle:
        rate = handle.samplerate
        start = round(offset * rate)
        if start < 0 or start >= handle.frames:
            raise AudioError(
                path,
                f"offset {offset} s is outside the file ({handle.frames / rate:.3f} s long)",
            )
        count = handle.frames - start if duration is None else round(duration * rate)
        count = min(count, handle.frames - start)
        wave = read_frames(handle, path, start, count)
    if wave.size == 0:
        raise AudioError(path, "no audio samples in the requested segment")
    return resample(torch.from_numpy(np.ascontiguousarray(wave)), rate, target_rate)


def iter_audio_blocks(
    path: str | Path,
    *,
    block_seconds: float = 30.0,
    raw_sample_rate: int | None = None,
    target_rate: int = TARGET_RATE,
) -> Iterator[torch.Tensor]:
    """The audio of ``path`` as consecutive (n_i,) float32 blocks at ``target_rate``.

    Memory stays constant whatever the file's length. Blocks start on multiples of the
    resampling period, and each is resampled with a margin of real (or, at the file's edges,
    zero) samples around it, so that the blocks joined equal :func:`read_audio`.
    """
    with open_audio(path, raw_sample_rate=raw_sample_rate) as handle:
        rate, total = handle.samplerate, handle.frames
        g = math.gcd(rate, target_rate)
        period_in, period_out = rate // g, target_rate // g
        periods = max(1, round(block_seconds * rate / period_in))
        block_in = periods * period_in
        margin = 0
        if rate != target_rate:
            margin = math.ceil(RESAMPLE_MARGIN_SECONDS * rate / period_in) * period_in
        for start in range(0, total, block_in):
            count = min(block_in, total - start)
            lo, hi = max(0, start - margin), min(total, start + count + margin)
            wave = torch.from_numpy(read_frames(handle, path, lo, hi - lo).copy())
            if margin == 0:
                yield wave
                continue
            padded = torch.nn.functional.pad(
                wave, (margin - (start - lo), margin - (start + count + margin - hi))
            )
            out = resample(padded, rate, target_rate)
            skip = margin // period_in * period_out
            yield out[skip : skip + resampled_length(count, rate, target_rate)]
