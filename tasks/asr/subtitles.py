"""Subtitles (SubRip, WebVTT) and NIST CTM from timed words.

- :func:`build_cues` groups a file's words into cues people can read: at most
  ``max_line_chars`` characters a line and ``max_lines`` lines, at most ``max_seconds`` a
  cue, and a new cue after a pause longer than ``pause_seconds``. Two lines are balanced
  (the shorter one on top). Cues never overlap and never run past the file's duration; a
  file without words gives no cues.
- :func:`srt_text`, :func:`vtt_text`: the cues as a SubRip file (``HH:MM:SS,mmm``; no cues:
  an empty file) and a WebVTT file (``HH:MM:SS.mmm`` after a ``WEBVTT`` header, which an
  empty file keeps).
- :func:`ctm_lines`: one ``<utt-id> 1 <start> <dur> <word> <conf>`` line a word.
- :func:`subtitle_names`: one name per audio file, unique, for its subtitle files.
- :func:`write_text_atomic`: a file that exists is complete (written to a temporary name,
  then renamed).

Times are written in whole milliseconds; every time is clamped to the duration rounded
down to a millisecond, so nothing a player reads lies past the end of the audio.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gfssm.tasks.asr.decoding import WordTiming

FORMATS = ("jsonl", "srt", "vtt", "ctm")


@dataclass(frozen=True)
class CueOptions:
    """How words are grouped into cues (defaults follow common subtitle guidelines)."""

    max_line_chars: int = 42
    max_lines: int = 2
    max_seconds: float = 7.0
    pause_seconds: float = 0.7

    def __post_init__(self) -> None:
        if self.max_line_chars < 1 or self.max_lines < 1 or self.max_seconds <= 0:
            raise ValueError(f"{self}: limits must be positive")


DEFAULT_CUES = CueOptions()


@dataclass(frozen=True)
class Cue:
    """One subtitle: shown from ``start`` to ``end`` (seconds), ``lines`` of text."""

    start: float
    end: float
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _millis(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _limit_millis(duration: float) -> int:
    """The duration in whole milliseconds, rounded down (with 1 ns of slack for float noise)."""
    return max(0, math.floor(duration * 1000 + 1e-6))


def clamp_words(words: Sequence[WordTiming], duration: float) -> tuple[WordTiming, ...]:
    """``words`` with start and end inside [0, duration rounded down to a millisecond] and
    end >= start."""
    duration = _limit_millis(duration) / 1000
    out = []
    for w in words:
        start = min(max(0.0, w.start), duration)
        end = min(max(start, w.end), duration)
        if (start, end) != (w.start, w.end):
            w = WordTiming(w.word, start, end, w.confidence)
        out.append(w)
    return tuple(out)


def _greedy_lines(words: Sequence[str], width: int) -> list[list[str]]:
    """Words filled into lines of at most ``width`` characters (a longer word alone)."""
    lines: list[list[str]] = []
    length = 0
    for word in words:
        if lines and length + 1 + len(word) <= width:
            lines[-1].append(word)
            length += 1 + len(word)
        else:
            lines.append([word])
            length = len(word)
    return lines


def _layout(words: Sequence[str], options: CueOptions) -> tuple[str, ...]:
    """The cue's lines: one line if it fits, else two balanced lines (the longer one at
    the bottom), else filled lines."""
    lines = _greedy_lines(words, options.max_line_chars)
    if len(lines) == 2:
        best = None
        for k in range(1, len(words)):
            top, bottom = " ".join(words[:k]), " ".join(words[k:])
            if len(top) > options.max_line_chars or len(bottom) > options.max_line_chars:
                continue
            score = (max(len(top), len(bottom)), len(top) > len(bottom))
            if best is None or score < best[0]:
                best = (score, (top, bottom))
        if best is not None:
            return best[1]
    return tuple(" ".join(line) for line in lines)


def build_cues(
    words: Sequence[WordTiming], duration: float, options: CueOptions = DEFAULT_CUES
) -> list[Cue]:
    """Cues of one file's ``words`` (in time order) for audio of ``duration`` seconds."""
    limit = _limit_millis(duration) / 1000
    words = clamp_words(words, duration)
    groups: list[list[WordTiming]] = []
    for w in words:
        current = groups[-1] if groups else None
        if current is not None:
            fits = (
                len(_greedy_lines([x.word for x in current] + [w.word], options.max_line_chars))
                <= options.max_lines
            )
            pause = w.start - current[-1].end > options.pause_seconds
            too_long = w.end - current[0].start > options.max_seconds
            if fits and not pause and not too_long:
                current.append(w)
                continue
        groups.append([w])
    cues: list[Cue] = []
    previous_end = 0.0
    for group in groups:
        start = max(group[0].start, previous_end)
        end = min(max(start, group[-1].end), limit)
        cues.append(Cue(start, end, _layout([w.word for w in group], options)))
        previous_end = end
    return cues


def format_timestamp(seconds: float, separator: str) -> str:
    """``HH:MM:SS<separator>mmm`` (``,`` for SubRip, ``.`` for WebVTT)."""
    ms = _millis(seconds)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{ms:03d}"


def srt_text(cues: Sequence[Cue]) -> str:
    """A SubRip file: numbered cues, each followed by a blank line; no cues, no text."""
    return "".join(
        f"{n}\n{format_timestamp(c.start, ',')} --> {format_timestamp(c.end, ',')}\n{c.text}\n\n"
        for n, c in enumerate(cues, start=1)
    )


def vtt_text(cues: Sequence[Cue]) -> str:
    """A WebVTT file: the ``WEBVTT`` header, then one block a cue."""
    blocks = "".join(
        f"{format_timestamp(c.start, '.')} --> {format_timestamp(c.end, '.')}\n{c.text}\n\n"
        for c in cues
    )
    return "WEBVTT\n\n" + blocks


def ctm_id(name: str) -> str:
    """A CTM utterance id: the name with white space replaced by ``_``."""
    return re.sub(r"\s", "_", name) or "_"


def ctm_lines(utt_id: str, words: Sequence[WordTiming], duration: float) -> list[str]:
    """NIST CTM lines ``<utt-id> 1 <start> <dur> <word> <conf>`` (seconds, 3 decimals;
    times clamped to the duration, confidences in [0, 1])."""
    limit = _limit_millis(duration)
    lines = []
    for w in words:
        start = min(_millis(w.start), limit)
        end = min(max(start, _millis(w.end)), limit)
        confidence = min(1.0, max(0.0, w.confidence))
        lines.append(
            f"{utt_id} 1 {start / 1000:.3f} {(end - start) / 1000:.3f} {w.word} {confidence:.3f}"
        )
    return lines


def subtitle_names(paths: Sequence[str]) -> list[str]:
    """A unique name per audio path (``/``-separated, no extension): the path relative to
    the deepest folder holding all of them, without its extension; where two would be
    equal the extension stays (``talk.wav``, ``talk.flac``), then ``-2``, ``-3`` ... are
    added in input order."""
    if not paths:
        return []
    absolute = [os.path.abspath(p) for p in paths]
    root = os.path.commonpath([os.path.dirname(p) for p in absolute])
    relative = [Path(os.path.relpath(p, root)) for p in absolute]
    bases = [r.with_suffix("").as_posix() for r in relative]
    counts = Counter(bases)
    names = [r.as_posix() if counts[b] > 1 else b for r, b in zip(relative, bases)]
    seen: Counter[str] = Counter()
    unique = []
    taken = set(names)
    for name in names:
        seen[name] += 1
        if seen[name] == 1:
            unique.append(name)
            continue
        n = seen[name]
        while f"{name}-{n}" in taken:
            n += 1
        unique.append(f"{name}-{n}")
        taken.add(unique[-1])
    return unique


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename:
    readers see the old file or the whole new one, never part of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
