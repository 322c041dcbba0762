"""Audio with known word boundaries, and the scoring of decoded word times against them.

Each distinct word is spoken once, alone, by espeak-ng and trimmed of its leading and
trailing silence with a fixed energy threshold; the file is then laid out from a seed:
phrases of a few words with short gaps between words and longer pauses between phrases,
digital silence in between. Every word's true start and end (the first and last sample
above the threshold) are therefore known to the sample, for a file of any length (an hour
takes seconds to build: the distinct words are synthesised once and reused).

Decoded words are matched to the truth in order (a word-level edit-distance alignment, as
for WER, ties broken by time) and only the words recognised exactly are timed, so a misrecognition does not
pass for a timing error. The report gives the median and 90th percentile of the start and
end errors, their signed means (a systematic lag), and the median error in the first and
in the last minute of the file: the drift of long-audio decoding.

    python -m gfssm.tasks.asr.word_truth --out truth.wav --minutes 60 --seed 0
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import torch

from gfssm.tasks.asr.audio import TARGET_RATE, read_audio
from gfssm.tasks.asr.decoding import WordTiming
from gfssm.tasks.asr.synth import espeak_binary
from gfssm.tasks.asr.text import normalise_text

# Common English words of one to three syllables, all in the recogniser's alphabet.
_WORD_LIST = """about after again air all also always animal answer back before below between big
    black book both boy bring call came change child city close cold come country cut day
    different does dog down each early earth eat end enough even every eye face family far
    father few find first follow food form found four friend give good great green group
    grow hand hard head hear help here high home horse house important just keep kind know
    land large last late learn leave left letter life light line little live long look
    made make many mark may mean money more morning mother mountain move much music name
    near need never new next night number often old only open order other paper people
    picture place plant play point question quick read real river road room same school
    second seem sentence should show side small something sound spell start state still
    story study sun sure table take tell than thing think three time together took tree
    under until very walk want watch water way week well white why window without word
    work world write year young"""
DEFAULT_WORDS: tuple[str, ...] = tuple(_WORD_LIST.split())


@dataclass(frozen=True)
class TruthConfig:
    """How the known-boundary audio is made. Times in seconds; ``threshold_dbfs``: the
    level (RMS over ``window_seconds``, dB below full scale) where speech starts and
    ends; ``phrase_words``: inclusive range of words between two pauses."""

    seed: int = 0
    voice: str = "en-us"
    speed: int = 150
    word_gap: tuple[float, float] = (0.06, 0.30)
    pause: tuple[float, float] = (0.6, 1.8)
    phrase_words: tuple[int, int] = (3, 9)
    lead_in: float = 0.5
    threshold_dbfs: float = -40.0
    window_seconds: float = 0.005


DEFAULT_TRUTH = TruthConfig()


@dataclass(frozen=True)
class TruthWord:
    """A word laid into the file and where its speech really is (seconds)."""

    word: str
    start: float
    end: float

    def to_json(self) -> dict:
        return {"word": self.word, "start": self.start, "end": self.end}


def speech_span(wave: torch.Tensor, config: TruthConfig = DEFAULT_TRUTH) -> tuple[int, int]:
    """wave (n,) -> (first, last + 1): the samples whose centred ``window_seconds`` RMS
    is at or above the threshold ((0, 0) if none is). The window is short (5 ms) so the
    span is within half a window of the first and last loud sample."""
    width = max(1, round(config.window_seconds * TARGET_RATE))
    power = torch.nn.functional.avg_pool1d(
        wave.double()[None, None] ** 2,
        width,
        stride=1,
        padding=width // 2,
        count_include_pad=True,
    )[0, 0, : wave.shape[0]]
    loud = torch.nonzero(power >= 10 ** (config.threshold_dbfs / 10)).flatten()
    if loud.numel() == 0:
        return 0, 0
    return int(loud[0]), int(loud[-1]) + 1


def synthesise_word(word: str, config: TruthConfig = DEFAULT_TRUTH) -> torch.Tensor:
    """``word`` spoken alone by espeak-ng, at 16 kHz, trimmed to its speech span (n,)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "word.wav"
        # -w, not --stdout: the streamed WAV header carries a placeholder length.
        subprocess.run(
            [espeak_binary(), "-v", config.voice, "-s", str(config.speed), "-w", str(path), word],
            check=True,
            capture_output=True,
        )
        wave = read_audio(path)
    # Round to the 16-bit grid the file is written in, so the span is that of the file.
    wave = torch.round(wave.clamp(-1, 1 - 2**-15) * 32768) / 32768
    first, last = speech_span(wave, config)
    if last <= first:
        raise ValueError(f"espeak-ng gave no audio above the threshold for {word!r}")
    return wave[first:last]


def plan_words(
    seconds: float, config: TruthConfig, words: Sequence[str], lengths: dict[str, int]
) -> list[tuple[str, int]]:
    """(word, first sample) of every word laid into ``seconds`` of audio, from the seed;
    ``lengths``: each word's trimmed length in samples."""
    rng = np.random.default_rng([config.seed, 13])
    total = int(seconds * TARGET_RATE)
    at = int(config.lead_in * TARGET_RATE)
    out: list[tuple[str, int]] = []
    while True:
        for _ in range(int(rng.integers(config.phrase_words[0], config.phrase_words[1] + 1))):
            word = words[int(rng.integers(len(words)))]
            if at + lengths[word] > total:
                return out
            out.append((word, at))
            at += lengths[word] + int(rng.uniform(*config.word_gap) * TARGET_RATE)
        at += int(rng.uniform(*config.pause) * TARGET_RATE)


def _checked_word(word: str) -> str:
    """``word`` as the recogniser writes it (:func:`normalise_text`): one word, or an error
    (the truth holds one time span per word)."""
    clean = normalise_text(word)
    if not clean or " " in clean:
        raise ValueError(f"{word!r} is not one word once normalised ({clean!r})")
    return clean


def build_truth_audio(
    out_wav: str | Path,
    seconds: float,
    config: TruthConfig = DEFAULT_TRUTH,
    words: Sequence[str] = DEFAULT_WORDS,
) -> list[TruthWord]:
    """Write ``seconds`` of 16 kHz 16-bit speech to ``out_wav`` (block by block: an hour
    needs no more memory than a word) and its words with their true times, also written
    beside it as ``<out_wav>.truth.jsonl``. Same config and words, same file."""
    words = list(dict.fromkeys(_checked_word(w) for w in words))
    if not words:
        raise ValueError("no words to speak")
    spoken = {w: synthesise_word(w, config) for w in words}
    plan = plan_words(seconds, config, words, {w: s.shape[0] for w, s in spoken.items()})
    truth: list[TruthWord] = []
    total = int(seconds * TARGET_RATE)
    written = 0
    with soundfile.SoundFile(out_wav, "w", TARGET_RATE, 1, subtype="PCM_16") as sink:
        for word, start in plan:
            sink.write(np.zeros(start - written, dtype=np.float32))
            sink.write(spoken[word].numpy())
            written = start + spoken[word].shape[0]
            truth.append(TruthWord(word, start / TARGET_RATE, written / TARGET_RATE))
        sink.write(np.zeros(total - written, dtype=np.float32))
    Path(f"{out_wav}.truth.jsonl").write_text(
        "".join(json.dumps(t.to_json()) + "\n" for t in truth)
    )
    return truth


def read_truth(path: str | Path) -> list[TruthWord]:
    """The words of a ``.truth.jsonl`` file written by :func:`build_truth_audio`."""
    lines = Path(path).read_text().splitlines()
    return [TruthWord(**json.loads(line)) for line in lines if line.strip()]


def aligned_pairs(
    truth: Sequence[TruthWord], words: Sequence[WordTiming], *, substitutions: bool = False
) -> list[tuple[int, int]]:
    """(truth index, decoded index) of the words recognised exactly (and, with
    ``substitutions``, of the misspelt words aligned one to one with a true word), matched
    in order: an alignment with the fewest word edits (substitutions, deletions,
    insertions: the ones WER counts), and among those the one whose matched starts are
    closest, so that a repeated word is matched to its own occurrence, not to its
    neighbour's."""
    n, m = len(truth), len(words)
    if not n or not m:
        return []
    ids: dict[str, int] = {}
    ref = np.array([ids.setdefault(t.word, len(ids)) for t in truth])
    hyp = np.array([ids.setdefault(w.word, len(ids)) for w in words])
    ref_start = np.array([t.start for t in truth])
    hyp_start = np.array([w.start for w in words])
    # A pair (match or substitution) costs a time penalty small enough that all of them
    # together weigh less than one edit: it only breaks ties between alignments of
    # equally many edits.
    span = max(ref_start.max(), hyp_start.max()) - min(ref_start.min(), hyp_start.min())
    eps = 1.0 / (1.0 + n * (span + 1.0))
    steps = np.arange(m + 1, dtype=np.float64)
    row = steps.copy()  # row i: the cost of aligning truth[:i] with words[:j]
    back = np.empty((n, m + 1), dtype=np.int8)  # 0 diagonal, 1 up (deletion), 2 left
    for i in range(n):
        cost = np.where(hyp == ref[i], 0.0, 1.0) + eps * np.abs(hyp_start - ref_start[i])
        diagonal, up = row[:-1] + cost, row[1:] + 1.0
        best = np.concatenate([[i + 1.0], np.minimum(diagonal, up)])
        back[i] = np.concatenate([[1], np.where(diagonal <= up, 0, 1)])
        # Insertions chain along the row: D[j] = min over k <= j of best[k] + (j - k).
        running = np.minimum.accumulate(best - steps)
        back[i][running < best - steps] = 2
        row = running + steps
    pairs = []
    i, j = n, m
    while i > 0 and j > 0:
        move = back[i - 1, j]
        if move == 0:
            if substitutions or ref[i - 1] == hyp[j - 1]:
                pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif move == 1:
            i -= 1
        else:
            j -= 1
    return pairs[::-1]


def _median(values: Sequence[float]) -> float:
    return float(np.median(np.abs(values))) if len(values) else float("nan")


def _p90(values: Sequence[float]) -> float:
    return float(np.percentile(np.abs(values), 90)) if len(values) else float("nan")


@dataclass(frozen=True)
class TimingReport:
    """Word-time errors of one decode against the truth. Errors are decoded minus true
    times in milliseconds (positive: late), one per timed word (recognised exactly, or
    also misspelt but aligned one to one with a true word); the ``first``/``last``
    windows are the words whose true start lies in the first or the last
    ``window_seconds`` of the file."""

    truth_words: int
    decoded_words: int
    exact: int
    start_errors_ms: tuple[float, ...]
    end_errors_ms: tuple[float, ...]
    first_window_ms: float
    last_window_ms: float
    window_seconds: float

    @property
    def timed(self) -> int:
        return len(self.start_errors_ms)

    @property
    def recall(self) -> float:
        """Share of the true words recognised exactly."""
        return self.exact / self.truth_words if self.truth_words else 0.0

    @property
    def drift_ms(self) -> float:
        """Median error of the last window minus that of the first."""
        return self.last_window_ms - self.first_window_ms

    def summary(self) -> dict[str, float]:
        starts, ends = self.start_errors_ms, self.end_errors_ms
        return {
            "truth_words": float(self.truth_words),
            "decoded_words": float(self.decoded_words),
            "exact": float(self.exact),
            "timed": float(self.timed),
            "recall": self.recall,
            "start_median_ms": _median(starts),
            "end_median_ms": _median(ends),
            "start_p90_ms": _p90(starts),
            "end_p90_ms": _p90(ends),
            "start_bias_ms": float(np.mean(starts)) if starts else float("nan"),
            "end_bias_ms": float(np.mean(ends)) if ends else float("nan"),
            "first_window_ms": self.first_window_ms,
            "last_window_ms": self.last_window_ms,
            "drift_ms": self.drift_ms,
        }


def score_word_times(
    truth: Sequence[TruthWord],
    words: Sequence[WordTiming],
    duration: float,
    *,
    window_seconds: float = 60.0,
    substitutions: bool = False,
) -> TimingReport:
    """Compare decoded ``words`` with the ``truth`` of a file of ``duration`` seconds:
    the exactly recognised words are timed, and with ``substitutions`` also the misspelt
    ones aligned to a true word (a weak recogniser's boundaries can be right while its
    spelling is not). The first/last window medians pool the |start| and |end| errors of
    their words."""
    pairs = aligned_pairs(truth, words, substitutions=substitutions)
    exact = sum(truth[i].word == words[j].word for i, j in pairs)
    starts = [1000 * (words[j].start - truth[i].start) for i, j in pairs]
    ends = [1000 * (words[j].end - truth[i].end) for i, j in pairs]

    def window(lo: float, hi: float) -> float:
        inside = [k for k, (i, _) in enumerate(pairs) if lo <= truth[i].start < hi]
        return _median([starts[k] for k in inside] + [ends[k] for k in inside])

    return TimingReport(
        truth_words=len(truth),
        decoded_words=len(words),
        exact=exact,
        start_errors_ms=tuple(starts),
        end_errors_ms=tuple(ends),
        first_window_ms=window(0.0, window_seconds),
        last_window_ms=window(duration - window_seconds, duration),
        window_seconds=window_seconds,
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m gfssm.tasks.asr.word_truth",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, help="the WAV to write (truth beside it)")
    p.add_argument("--minutes", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--words", default=None, help="a text file of words (default: built in)")
    p.add_argument("--voice", default=DEFAULT_TRUTH.voice)
    p.add_argument("--speed", type=int, default=DEFAULT_TRUTH.speed)
    args = p.parse_args(argv)
    words = Path(args.words).read_text().split() if args.words else DEFAULT_WORDS
    config = TruthConfig(seed=args.seed, voice=args.voice, speed=args.speed)
    truth = build_truth_audio(args.out, args.minutes * 60, config, words)
    print(f"{args.out}: {len(truth)} words, truth in {args.out}.truth.jsonl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
