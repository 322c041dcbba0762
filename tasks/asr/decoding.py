"""CTC decoding: greedy (also incremental, for streams) and beam search with torchaudio's
flashlight-text ``ctc_decoder`` (optional lexicon and KenLM model); word timestamps from
the frames at which a word's characters are emitted.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from gfssm.tasks.asr.text import BLANK, WORD_SEPARATOR, CharVocabulary


@dataclass(frozen=True)
class WordTiming:
    """A recognised word and when it was said (seconds from the start of the audio)."""

    word: str
    start: float
    end: float

    def to_json(self) -> dict:
        return {"word": self.word, "start": round(self.start, 3), "end": round(self.end, 3)}


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
    _words: list[WordTiming] = field(default_factory=list)

    def feed(self, log_probs: torch.Tensor) -> None:
        best = log_probs.argmax(dim=-1).tolist()
        blank, separator = self.vocabulary.blank, self.vocabulary.separator
        for offset, token in enumerate(best):
            t = self.frames + offset
            if token == self._previous:
                if token not in (blank, separator):
                    self._word_end = t + 1  # a character held over several frames
            elif token == separator:
                self._close_word()
            elif token != blank:
                if not self._word:
                    self._word_start = t
                self._word.append(self.vocabulary.tokens[token])
                self._word_end = t + 1
            self._previous = token
        self.frames += len(best)

    def _close_word(self) -> None:
        if self._word:
            self._words.append(
                WordTiming(
                    "".join(self._word),
                    self._word_start * self.frame_seconds,
                    self._word_end * self.frame_seconds,
                )
            )
            self._word = []

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
    tokens: list[str], timesteps: list[int], frame_seconds: float
) -> tuple[WordTiming, ...]:
    """Words of a token sequence with the frame of each token: a word runs from its first
    character's frame to one frame after its last."""
    words, chars, start, end = [], [], 0, 0
    for token, t in zip([*tokens, WORD_SEPARATOR], [*timesteps, 0]):
        if token == WORD_SEPARATOR:
            if chars:
                words.append(WordTiming("".join(chars), start * frame_seconds, end * frame_seconds))
            chars = []
        elif token != BLANK:
            if not chars:
                start = t
            chars.append(token)
            end = t + 1
    return tuple(words)


@dataclass(frozen=True)
class BeamSearchConfig:
    """Beam search settings. ``lexicon`` (word + spelling a line, spelling ending in ``|``)
    restricts output to known words; ``kenlm`` (ARPA or binary) is then a word model.
    Without a lexicon, ``kenlm`` must be a character model over the CTC tokens (letters,
    ``'`` and ``|``; :func:`gfssm.tasks.asr.lm.write_arpa` with ``units="chars"``)."""

    beam_size: int = 32
    beam_threshold: float = 25.0
    lexicon: str | None = None
    kenlm: str | None = None
    lm_weight: float = 1.0
    word_score: float = 0.0


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
                beam_threshold=config.beam_threshold,
                lm_weight=config.lm_weight,
                word_score=config.word_score,
                blank_token=BLANK,
                sil_token=WORD_SEPARATOR,
            )

    def _transcript(self, hypothesis) -> Transcript:
        tokens = self.decoder.idxs_to_tokens(hypothesis.tokens)
        # Flashlight's paths hold a silence before the first frame: position i is frame i-1.
        frames = [max(0, t - 1) for t in hypothesis.timesteps.tolist()]
        words = words_from_tokens(tokens, frames, self.frame_seconds)
        return Transcript(" ".join(w.word for w in words), words)

    def decode(self, log_probs: torch.Tensor) -> Transcript:
        """One utterance (T, V) -> best hypothesis."""
        emissions = log_probs.detach().float().cpu().contiguous()[None]
        return self._transcript(self.decoder(emissions)[0][0])

    def decode_batch(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[Transcript]:
        emissions = log_probs.detach().float().cpu().contiguous()
        results = self.decoder(emissions, lengths.cpu().to(torch.int32))
        return [self._transcript(r[0]) for r in results]

    # Incremental use (long audio): begin, step per piece, finish.
    def begin(self) -> None:
        self.decoder.decode_begin()

    def step(self, log_probs: torch.Tensor) -> None:
        self.decoder.decode_step(log_probs.detach().float().cpu().contiguous())

    def finish(self) -> Transcript:
        self.decoder.decode_end()
        return self._transcript(self.decoder.get_final_hypothesis()[0])
