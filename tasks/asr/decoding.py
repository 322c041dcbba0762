"""CTC decoding: greedy (also incremental, for streams) and beam search with torchaudio's
flashlight-text ``ctc_decoder`` (optional lexicon and KenLM model); word timestamps from
the frames at which a word's characters are emitted, and a confidence per word from the
frame posteriors of its characters.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from gfssm.tasks.asr.text import BLANK, WORD_SEPARATOR, CharVocabulary


@dataclass(frozen=True)
class WordTiming:
    """A recognised word, when it was said (seconds from the start of the audio) and how
    sure the model is of it: ``confidence`` in [0, 1], the mean posterior probability of
    the word's characters at the frames that emit them (greedy decoding: every frame whose
    best token is one of the word's characters; beam search: the frame of each character
    on the best path), rounded to 3 decimals."""

    word: str
    start: float
    end: float
    confidence: float = 1.0

    def to_json(self) -> dict:
        return {
            "word": self.word,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "confidence": round(self.confidence, 3),
        }

    @classmethod
    def from_json(cls, row: dict) -> WordTiming:
        return cls(row["word"], row["start"], row["end"], row.get("confidence", 1.0))


def _probability(log_prob: float) -> float:
    """A log-probability as a probability in [0, 1] (exp of a log-softmax may exceed 1 by
    a rounding error)."""
    return min(1.0, max(0.0, math.exp(log_prob)))


def _confidence(mean_posterior: float) -> float:
    """A word's confidence, rounded to 3 decimals: what the JSON holds, and the same for a
    file decoded alone or padded into a batch (whose posteriors differ in the last bits)."""
    return round(min(1.0, max(0.0, mean_posterior)), 3)


@dataclass(frozen=True)
class Transcript:
    text: str
    words: tuple[WordTiming, ...] = ()


@dataclass
class GreedyStream:
    """Greedy CTC decoding fed piece by piece: memory grows with the text, not the audio.

    ``feed(log_probs (T, V))`` for consecutive pieces, then ``finish()``; word times are in
    seconds from the first frame fed."""

    vocabulary: CharVocabulary
    frame_seconds: float
    frames: int = 0
    _previous: int = -1
    _word: list[str] = field(default_factory=list)
    _word_start: int = 0
    _word_end: int = 0
    _word_posterior: float = 0.0  # sum over the word's character frames
    _word_frames: int = 0
    _words: list[WordTiming] = field(default_factory=list)

    def feed(self, log_probs: torch.Tensor) -> None:
        best_index = log_probs.argmax(dim=-1)
        best = best_index.tolist()
        best_log_prob = log_probs.gather(-1, best_index[:, None])[:, 0].tolist()
        blank, separator = self.vocabulary.blank, self.vocabulary.separator
        for offset, token in enumerate(best):
            t = self.frames + offset
            if token == self._previous:
                if token not in (blank, separator):
                    self._word_end = t + 1  # a character held over several frames
                    self._add_frame(best_log_prob[offset])
            elif token == separator:
                self._close_word()
            elif token != blank:
                if not self._word:
                    self._word_start = t
                self._word.append(self.vocabulary.tokens[token])
                self._word_end = t + 1
                self._add_frame(best_log_prob[offset])
            self._previous = token
        self.frames += len(best)

    def _add_frame(self, log_prob: float) -> None:
        self._word_posterior += _probability(log_prob)
        self._word_frames += 1

    def _close_word(self) -> None:
        if self._word:
            self._words.append(
                WordTiming(
                    "".join(self._word),
                    self._word_start * self.frame_seconds,
                    self._word_end * self.frame_seconds,
                    _confidence(self._word_posterior / self._word_frames),
                )
            )
            self._word = []
            self._word_posterior, self._word_frames = 0.0, 0

    def finish(self) -> Transcript:
        self._close_word()
        return Transcript(" ".join(w.word for w in self._words), tuple(self._words))


def greedy_decode(
    log_probs: torch.Tensor, vocabulary: CharVocabulary, frame_seconds: float = 0.02
) -> Transcript:
    """One utterance's log_probs (T, V) -> best-path transcript with word times."""
    stream = GreedyStream(vocabulary, frame_seconds)
    stream.feed(log_probs)
    return stream.finish()


def greedy_decode_batch(
    log_probs: torch.Tensor,
    lengths: torch.Tensor,
    vocabulary: CharVocabulary,
    frame_seconds: float = 0.02,
) -> list[Transcript]:
    """log_probs (b, T, V), lengths (b,) frames -> one transcript per item."""
    return [
        greedy_decode(log_probs[i, : int(lengths[i])], vocabulary, frame_seconds)
        for i in range(log_probs.shape[0])
    ]


def words_from_tokens(
    tokens: list[str],
    timesteps: list[int],
    frame_seconds: float,
    posteriors: list[float] | None = None,
) -> tuple[WordTiming, ...]:
    """Words of a token sequence with the frame of each token: a word runs from its first
    character's frame to one frame after its last. ``posteriors`` (one probability per
    token) give each word's confidence, the mean over its characters (1.0 without)."""
    if posteriors is None:
        posteriors = [1.0] * len(tokens)
    words, chars, start, end, mass = [], [], 0, 0, 0.0
    for token, t, p in zip([*tokens, WORD_SEPARATOR], [*timesteps, 0], [*posteriors, 0.0]):
        if token == WORD_SEPARATOR:
            if chars:
                words.append(
                    WordTiming(
                        "".join(chars),
                        start * frame_seconds,
                        end * frame_seconds,
                        _confidence(mass / len(chars)),
                    )
                )
            chars, mass = [], 0.0
        elif token != BLANK:
            if not chars:
                start = t
            chars.append(token)
            end = t + 1
            mass += p
    return tuple(words)


@dataclass(frozen=True)
class BeamSearchConfig:
    """Beam search settings. ``lexicon`` (word + spelling a line, spelling ending in ``|``)
    restricts output to known words; ``kenlm`` (ARPA or binary) is then a word model.
    Without a lexicon, ``kenlm`` must be a character model over the CTC tokens (letters,
    ``'`` and ``|``; :func:`gfssm.tasks.asr.lm.write_arpa` with ``units="chars"``)."""

    beam_size: int = 32
    beam_threshold: float = 25.0
    beam_size_token: int | None = None  # None: every token, each frame
    lexicon: str | None = None
    kenlm: str | None = None
    lm_weight: float = 1.0
    word_score: float = 0.0


def _posteriors(log_probs: torch.Tensor) -> torch.Tensor:
    """Frame posteriors as kept for word confidences (float16: the same whether a file is
    decoded at once or piece by piece)."""
    return log_probs.exp().half()


class BeamSearchDecoder:
    """Beam search over CTC log-probabilities with torchaudio's flashlight decoder."""

    def __init__(self, vocabulary: CharVocabulary, config: BeamSearchConfig, frame_seconds=0.02):
        from torchaudio.models.decoder import ctc_decoder

        for name in ("lexicon", "kenlm"):
            value = getattr(config, name)
            if value is not None and not Path(value).is_file():
                raise FileNotFoundError(f"{value}: {name} file not found")
        self.vocabulary = vocabulary
        self.frame_seconds = frame_seconds
        with tempfile.TemporaryDirectory() as tmp:
            lm_dict = None
            if config.kenlm is not None and config.lexicon is None:
                # Without a lexicon the decoder scores the LM by token index, but the word
                # table torchaudio builds by default is not in token order (a character LM
                # then scores the wrong characters): give it the tokens, in order.
                lm_dict = str(Path(tmp) / "tokens.txt")
                Path(lm_dict).write_text("\n".join(vocabulary.tokens) + "\n")
            self.decoder = ctc_decoder(
                lexicon=config.lexicon,
                tokens=list(vocabulary.tokens),
                lm=config.kenlm,
                lm_dict=lm_dict,
                beam_size=config.beam_size,
                beam_size_token=config.beam_size_token,
                beam_threshold=config.beam_threshold,
                lm_weight=config.lm_weight,
                word_score=config.word_score,
                blank_token=BLANK,
                sil_token=WORD_SEPARATOR,
            )

    def _transcript(self, hypothesis, probs: torch.Tensor) -> Transcript:
        """``probs`` (T, V): the utterance's frame posteriors, for word confidences."""
        token_ids = hypothesis.tokens.tolist()
        tokens = self.decoder.idxs_to_tokens(hypothesis.tokens)
        # Flashlight's paths hold a silence before the first frame: position i is frame i-1.
        frames = [max(0, t - 1) for t in hypothesis.timesteps.tolist()]
        last = probs.shape[0] - 1
        posteriors = [
            min(1.0, float(probs[min(t, last), i])) if last >= 0 else 1.0
            for t, i in zip(frames, token_ids)
        ]
        words = words_from_tokens(tokens, frames, self.frame_seconds, posteriors)
        return Transcript(" ".join(w.word for w in words), words)

    def decode(self, log_probs: torch.Tensor) -> Transcript:
        """One utterance (T, V) -> best hypothesis."""
        emissions = log_probs.detach().float().cpu().contiguous()
        return self._transcript(self.decoder(emissions[None])[0][0], _posteriors(emissions))

    def decode_batch(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[Transcript]:
        emissions = log_probs.detach().float().cpu().contiguous()
        results = self.decoder(emissions, lengths.cpu().to(torch.int32))
        return [
            self._transcript(r[0], _posteriors(emissions[i, : int(lengths[i])]))
            for i, r in enumerate(results)
        ]

    # Incremental use (long audio): begin, step per piece, finish. The frame posteriors
    # are kept (float16, 58 bytes a frame: 10 MB an hour) for the word confidences.
    def begin(self) -> None:
        self._probs: list[torch.Tensor] = []
        self.decoder.decode_begin()

    def step(self, log_probs: torch.Tensor) -> None:
        emissions = log_probs.detach().float().cpu().contiguous()
        self._probs.append(_posteriors(emissions))
        self.decoder.decode_step(emissions)

    def finish(self) -> Transcript:
        self.decoder.decode_end()
        probs = torch.cat(self._probs) if self._probs else torch.zeros(0, 1)
        self._probs = []
        return self._transcript(self.decoder.get_final_hypothesis()[0], probs)
