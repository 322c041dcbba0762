"""Transcription and evaluation of files, for users and for the Ray pipelines.

- :func:`transcribe_file`: one file of any length -> text, word times, duration (a pure
  function of model and file: Ray Data actors call it, or :func:`transcribe_batch`).
- :func:`transcribe_batch`: many files; short ones are padded into batches (one forward
  for many files), long ones go through the constant-memory chunked path; a bad file gives
  its error instead of a result and the others go on.
- :func:`transcribe`: single process, into a JSONL file: goes on past bad files (listed in
  ``<out>.failed.jsonl``), keeps what it wrote, and resumes.
- :func:`evaluate_manifest`: CER/WER per utterance and overall on a labelled set.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from gfssm.tasks.asr.audio import AudioError, audio_info, iter_audio_blocks, read_audio
from gfssm.tasks.asr.decoding import (
    BeamSearchDecoder,
    Transcript,
    WordTiming,
    greedy_decode_batch,
)
from gfssm.tasks.asr.longform import DEFAULT_CHUNKING, ChunkingConfig, decode_long_audio
from gfssm.tasks.asr.manifests import Utterance, iter_audio_inputs, read_dataset
from gfssm.tasks.asr.metrics import ErrorRates
from gfssm.tasks.asr.model import CtcSpeechModel
from gfssm.tasks.asr.subtitles import (
    DEFAULT_CUES,
    Cue,
    CueOptions,
    build_cues,
    clamp_words,
    srt_text,
    vtt_text,
)
from gfssm.tasks.asr.text import CharVocabulary, normalise_text

FAILED_SUFFIX = ".failed.jsonl"


@dataclass(frozen=True)
class TranscriptionResult:
    """One file's transcript: ``words`` (:class:`WordTiming`: word, start, end, confidence)
    lie within [0, ``duration``] seconds."""

    audio_filepath: str
    text: str
    words: tuple[WordTiming, ...]
    duration: float

    def to_json(self) -> dict:
        return {
            "audio_filepath": self.audio_filepath,
            "text": self.text,
            "duration": round(self.duration, 4),
            "words": [w.to_json() for w in self.words],
        }

    @classmethod
    def from_json(cls, row: dict) -> TranscriptionResult:
        words = tuple(WordTiming.from_json(w) for w in row["words"])
        return cls(row["audio_filepath"], row["text"], words, row["duration"])

    def cues(self, options: CueOptions = DEFAULT_CUES) -> list[Cue]:
        """Subtitle cues of this file (:func:`gfssm.tasks.asr.subtitles.build_cues`)."""
        return build_cues(self.words, self.duration, options)

    def srt(self, options: CueOptions = DEFAULT_CUES) -> str:
        """This file as SubRip text."""
        return srt_text(self.cues(options))

    def vtt(self, options: CueOptions = DEFAULT_CUES) -> str:
        """This file as WebVTT text."""
        return vtt_text(self.cues(options))


def _result(path: str, transcript: Transcript, duration: float) -> TranscriptionResult:
    """The result with word times clamped to the file's duration, rounded down to a
    millisecond (the last 20 ms frame may reach past the last sample)."""
    return TranscriptionResult(
        path, transcript.text, clamp_words(transcript.words, duration), duration
    )


@dataclass(frozen=True)
class TranscriptionFailure:
    audio_filepath: str
    error: str

    def to_json(self) -> dict:
        return {"audio_filepath": self.audio_filepath, "error": self.error}


def load_recognizer(model_dir: str | Path, *, device: str | torch.device = "cpu") -> CtcSpeechModel:
    """The speech model saved in ``model_dir`` (a training checkpoint or final model)."""
    from gfssm.tasks.pretrained import load_model

    loaded = load_model(model_dir, map_location=device)
    if loaded.task.name != "asr":
        raise ValueError(f"{model_dir}: a {loaded.task.name!r} model, not a speech (asr) model")
    return loaded.model


def _decode(model, log_probs, lengths, decoder, vocabulary) -> list[Transcript]:
    if decoder is not None:
        return decoder.decode_batch(log_probs, lengths)
    return greedy_decode_batch(log_probs, lengths, vocabulary, model.frame_seconds)


@torch.no_grad()
def decode_waves(
    model: CtcSpeechModel,
    waves: Sequence[torch.Tensor],
    *,
    decoder: BeamSearchDecoder | None = None,
    vocabulary: CharVocabulary | None = None,
) -> list[Transcript]:
    """Short 16 kHz utterances (n_i,) in one padded forward pass -> transcripts."""
    device = next(model.parameters()).device
    lengths = torch.tensor([w.shape[0] for w in waves], dtype=torch.long)
    audio = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        audio[i, : w.shape[0]] = w
    log_probs, frames = model(audio.to(device), lengths.to(device))
    return _decode(model, log_probs.cpu(), frames.cpu(), decoder, vocabulary or CharVocabulary())


def transcribe_file(
    model: CtcSpeechModel,
    path: str | Path,
    *,
    decoder: BeamSearchDecoder | None = None,
    chunking: ChunkingConfig = DEFAULT_CHUNKING,
    raw_sample_rate: int | None = None,
) -> TranscriptionResult:
    """Transcribe one file of any length in constant memory (greedy unless a beam
    ``decoder`` is given; a decoder serves one call at a time). Raises AudioError."""
    model.eval()
    info = audio_info(path, raw_sample_rate=raw_sample_rate)
    blocks = iter_audio_blocks(
        path, block_seconds=chunking.chunk_seconds, raw_sample_rate=raw_sample_rate
    )
    transcript = decode_long_audio(model, blocks, decoder=decoder, chunking=chunking)
    return _result(str(path), transcript, info.duration)


def transcribe_batch(
    model: CtcSpeechModel,
    items: Sequence[Utterance | str | Path],
    *,
    decoder: BeamSearchDecoder | None = None,
    chunking: ChunkingConfig = DEFAULT_CHUNKING,
    raw_sample_rate: int | None = None,
) -> list[TranscriptionResult | TranscriptionFailure]:
    """One result (or failure) per item, in order. Files up to ``chunk_seconds`` long are
    batched together; longer ones stream through :func:`transcribe_file`."""
    model.eval()
    utts = [i if isinstance(i, Utterance) else Utterance(str(i), 0.0) for i in items]
    out: list[TranscriptionResult | TranscriptionFailure | None] = [None] * len(utts)
    short: list[tuple[int, torch.Tensor, float]] = []
    for k, utt in enumerate(utts):
        rate = utt.sample_rate or raw_sample_rate
        try:
            info = audio_info(utt.audio_filepath, raw_sample_rate=rate)
            if info.duration <= chunking.chunk_seconds:
                short.append(
                    (k, read_audio(utt.audio_filepath, raw_sample_rate=rate), info.duration)
                )
            else:
                out[k] = transcribe_file(
                    model,
                    utt.audio_filepath,
                    decoder=decoder,
                    chunking=chunking,
                    raw_sample_rate=rate,
                )
        except (AudioError, OSError) as err:
            out[k] = TranscriptionFailure(utt.audio_filepath, str(err))
    if short:
        transcripts = decode_waves(model, [w for _, w, _ in short], decoder=decoder)
        for (k, _, duration), t in zip(short, transcripts):
            out[k] = _result(utts[k].audio_filepath, t, duration)
    return [r for r in out if r is not None]


@dataclass
class TranscribeSummary:
    written: int = 0
    skipped: int = 0
    failed: list[TranscriptionFailure] = field(default_factory=list)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0

    @property
    def real_time_factor(self) -> float:
        """Processing time per second of audio (below 1: faster than real time)."""
        return self.wall_seconds / self.audio_seconds if self.audio_seconds else 0.0


def read_finished(out_jsonl: Path) -> set[str]:
    """Files already in ``out_jsonl``; a line cut off by an interruption is removed so that
    appending continues cleanly."""
    if not out_jsonl.is_file():
        return set()
    data = out_jsonl.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        out_jsonl.write_bytes(complete)
    done = set()
    for number, line in enumerate(complete.decode("utf-8").splitlines(), start=1):
        if line.strip():
            try:
                done.add(json.loads(line)["audio_filepath"])
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(
                    f"{out_jsonl}:{number}: not a transcription line ({err}); resume needs the "
                    f"file this function wrote, or a new output path"
                ) from err
    return done


def transcribe(
    model: CtcSpeechModel,
    inputs: str | Path | Iterable[str | Path],
    out_jsonl: str | Path,
    *,
    decoder: BeamSearchDecoder | None = None,
    chunking: ChunkingConfig = DEFAULT_CHUNKING,
    raw_sample_rate: int | None = None,
    batch_files: int = 16,
    progress: bool = True,
) -> TranscribeSummary:
    """Transcribe ``inputs`` (folders, list files, manifests or paths) into ``out_jsonl``,
    one JSON line per file, appended as soon as it is done. Files already there are
    skipped (resume); failures go to ``<out>.failed.jsonl`` and the rest goes on."""
    out_jsonl = Path(out_jsonl)
    out_jsonl.parent.mkdir(parents=True, exist_ok=True)
    done = read_finished(out_jsonl)
    items = list(iter_audio_inputs(inputs))
    todo = [u for u in items if u.audio_filepath not in done]
    summary = TranscribeSummary(skipped=len(items) - len(todo))
    failed_path = out_jsonl.with_name(out_jsonl.stem + FAILED_SUFFIX)
    start = time.perf_counter()
    with (
        out_jsonl.open("a", encoding="utf-8") as sink,
        tqdm(total=len(todo), desc="transcribing", unit="file", disable=not progress) as bar,
    ):
        for lo in range(0, len(todo), batch_files):
            group = todo[lo : lo + batch_files]
            for result in transcribe_batch(
                model, group, decoder=decoder, chunking=chunking, raw_sample_rate=raw_sample_rate
            ):
                if isinstance(result, TranscriptionFailure):
                    summary.failed.append(result)
                else:
                    sink.write(json.dumps(result.to_json(), ensure_ascii=False) + "\n")
                    sink.flush()
                    summary.written += 1
                    summary.audio_seconds += result.duration
            bar.update(len(group))
    summary.wall_seconds = time.perf_counter() - start
    if summary.failed:
        failed_path.write_text(
            "".join(json.dumps(f.to_json(), ensure_ascii=False) + "\n" for f in summary.failed)
        )
    elif failed_path.exists():
        failed_path.unlink()  # an earlier run's failures have all been done now
    return summary


def _finite(value: float) -> float | None:
    return value if value != float("inf") else None


@torch.no_grad()
def evaluate_utterances(
    model: CtcSpeechModel,
    utts: Sequence[Utterance],
    *,
    decoder: BeamSearchDecoder | None = None,
    chunking: ChunkingConfig = DEFAULT_CHUNKING,
    batch_files: int = 16,
) -> tuple[list[dict], float]:
    """One row per utterance, in order: reference, hypothesis, CER and WER, or the error
    that kept the audio from being read; and the seconds of audio decoded."""
    model.eval()
    rows: list[dict] = []
    audio_seconds = 0.0
    for lo in range(0, len(utts), batch_files):
        group = utts[lo : lo + batch_files]
        waves, kept = [], []
        for utt in group:
            try:
                waves.append(
                    read_audio(
                        utt.audio_filepath,
                        offset=utt.offset,
                        duration=utt.duration if utt.offset else None,
                        raw_sample_rate=utt.sample_rate,
                    )
                )
                kept.append(utt)
            except AudioError as err:
                rows.append({"audio_filepath": utt.audio_filepath, "error": str(err)})
        limit = chunking.chunk_seconds * model.sample_rate
        short = [i for i, w in enumerate(waves) if w.shape[0] <= limit]
        hyps: dict[int, Transcript] = (
            dict(zip(short, decode_waves(model, [waves[i] for i in short], decoder=decoder)))
            if short
            else {}
        )
        for i, w in enumerate(waves):
            if i not in hyps:
                hyps[i] = decode_long_audio(model, [w], decoder=decoder, chunking=chunking)
        for i, utt in enumerate(kept):
            reference = normalise_text(utt.text)
            scores = ErrorRates().add(reference, hyps[i].text)
            audio_seconds += waves[i].shape[0] / model.sample_rate
            rows.append(
                {
                    "audio_filepath": utt.audio_filepath,
                    "reference": reference,
                    "hypothesis": hyps[i].text,
                    "cer": _finite(scores["cer"]),
                    "wer": _finite(scores["wer"]),
                }
            )
    return rows, audio_seconds


def summarise_rows(rows: Iterable[dict]) -> dict[str, float]:
    """Overall CER/WER and counts of evaluation rows (rows with an ``error`` count as
    ``failed``)."""
    rates, failures = ErrorRates(), 0
    for row in rows:
        if "error" in row:
            failures += 1
        else:
            rates.add(row["reference"], row["hypothesis"])
    return {**rates.summary(), "failed": float(failures)}


def evaluate_manifest(
    model: CtcSpeechModel,
    data: str | Path,
    *,
    decoder: BeamSearchDecoder | None = None,
    chunking: ChunkingConfig = DEFAULT_CHUNKING,
    out_jsonl: str | Path | None = None,
    batch_files: int = 16,
) -> dict[str, float]:
    """CER and WER of ``model`` on labelled data (manifest, LibriSpeech folder or Common
    Voice TSV), both sides normalised. Per-utterance rows go to ``out_jsonl`` if given;
    returns the overall rates, counts and the real-time factor."""
    start = time.perf_counter()
    rows, audio_seconds = evaluate_utterances(
        model, read_dataset(data), decoder=decoder, chunking=chunking, batch_files=batch_files
    )
    wall = time.perf_counter() - start
    if out_jsonl is not None:
        Path(out_jsonl).parent.mkdir(parents=True, exist_ok=True)
        Path(out_jsonl).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    summary = summarise_rows(rows)
    summary.update(
        audio_seconds=audio_seconds,
        real_time_factor=wall / audio_seconds if audio_seconds else 0.0,
    )
    return summary
