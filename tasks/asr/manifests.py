"""Speech data in the formats people have, read into one list of :class:`Utterance`.

- JSONL manifests (NeMo's): one JSON object a line with ``audio_filepath``, ``duration``
  (seconds) and ``text``; optional ``offset`` (seconds into the file) and ``sample_rate``
  (only for headerless PCM). Relative paths are relative to the manifest's folder.
- LibriSpeech-style trees: ``*.trans.txt`` files (``ID transcript`` a line) beside
  ``ID.flac`` (or ``.wav``).
- Common Voice TSV: a ``path`` and a ``sentence`` column; clips in ``clips/`` beside it.
- For transcription only: a list file (one path a line), a folder, or single files.

Errors name the file and the line.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from gfssm.tasks.asr.audio import KNOWN_SUFFIXES, RAW_SUFFIXES, audio_info
from gfssm.tasks.jobs import TaskInputError

REQUIRED_FIELDS = ("audio_filepath", "duration", "text")
AUDIO_SUFFIXES = KNOWN_SUFFIXES | RAW_SUFFIXES


class ManifestError(TaskInputError):
    """A data description is malformed; the message names the file and line."""


@dataclass(frozen=True)
class Utterance:
    """One labelled stretch of audio. ``source`` says where it was described (for errors)."""

    audio_filepath: str
    duration: float
    text: str = ""
    offset: float = 0.0
    sample_rate: int | None = None
    source: str = ""

    def to_json(self) -> dict:
        row = {k: v for k, v in asdict(self).items() if k != "source"}
        if not self.offset:
            row.pop("offset")
        if self.sample_rate is None:
            row.pop("sample_rate")
        return row


def _number(value, field: str, where: str, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ManifestError(f"{where}: field {field!r} must be a number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ManifestError(f"{where}: field {field!r} must be {'>' if positive else '>='} 0")
    return float(value)


def parse_manifest_line(line: str, where: str, base: Path) -> Utterance:
    """One JSONL line -> Utterance; ``where`` is ``file:line`` for error messages."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise ManifestError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from err
    if not isinstance(row, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {type(row).__name__}")
    missing = [f for f in REQUIRED_FIELDS if f not in row]
    if missing:
        raise ManifestError(
            f"{where}: missing field(s) {missing}; each line needs "
            f"{list(REQUIRED_FIELDS)} (optional: offset, sample_rate)"
        )
    path = row["audio_filepath"]
    if not isinstance(path, str) or not path:
        raise ManifestError(f"{where}: field 'audio_filepath' must be a non-empty string")
    if not isinstance(row["text"], str):
        raise ManifestError(f"{where}: field 'text' must be a string, got {row['text']!r}")
    rate = row.get("sample_rate")
    if rate is not None and (not isinstance(rate, int) or isinstance(rate, bool) or rate <= 0):
        raise ManifestError(f"{where}: field 'sample_rate' must be a positive integer")
    full = Path(path) if Path(path).is_absolute() else base / path
    return Utterance(
        audio_filepath=str(full),
        duration=_number(row["duration"], "duration", where, positive=True),
        text=row["text"],
        offset=_number(row.get("offset", 0.0), "offset", where, positive=False),
        sample_rate=rate,
        source=where,
    )


def read_manifest(path: str | Path) -> list[Utterance]:
    """All utterances of a JSONL manifest (blank lines are skipped)."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    out = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                out.append(parse_manifest_line(line, f"{path}:{number}", path.absolute().parent))
    if not out:
        raise ManifestError(f"{path}: manifest has no utterances")
    return out


def write_manifest(utterances: Iterable[Utterance], path: str | Path) -> Path:
    """Write a JSONL manifest (paths as given)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for utt in utterances:
            handle.write(json.dumps(utt.to_json(), ensure_ascii=False) + "\n")
    return path


def read_librispeech(root: str | Path) -> list[Utterance]:
    """Every ``*.trans.txt`` under ``root``; audio ``ID.flac`` (or ``.wav``) beside it."""
    root = Path(root)
    transcripts = sorted(root.rglob("*.trans.txt"))
    if not transcripts:
        raise ManifestError(f"{root}: no *.trans.txt files (not a LibriSpeech-style tree)")
    out = []
    for trans in transcripts:
        for number, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{trans}:{number}"
            utt_id, _, text = line.strip().partition(" ")
            audio = next(
                (
                    trans.parent / f"{utt_id}{s}"
                    for s in (".flac", ".wav")
                    if (trans.parent / f"{utt_id}{s}").is_file()
                ),
                None,
            )
            if audio is None:
                raise ManifestError(f"{where}: no {utt_id}.flac or {utt_id}.wav beside it")
            info = audio_info(audio)
            out.append(Utterance(str(audio), info.duration, text.strip(), source=where))
    return out


def read_common_voice(tsv: str | Path, *, clips_dir: str | Path | None = None) -> list[Utterance]:
    """A Common Voice ``*.tsv`` (``path`` and ``sentence`` columns); clips in ``clips/``."""
    tsv = Path(tsv)
    clips = Path(clips_dir) if clips_dir else tsv.parent / "clips"
    out = []
    with tsv.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = {"path", "sentence"} - set(reader.fieldnames or [])
        if missing:
            raise ManifestError(
                f"{tsv}:1: missing column(s) {sorted(missing)}; a Common Voice TSV has "
                f"'path' and 'sentence' columns"
            )
        for number, row in enumerate(reader, start=2):
            if not row.get("path"):
                raise ManifestError(f"{tsv}:{number}: empty 'path'")
            audio = clips / row["path"]
            info = audio_info(audio)
            out.append(
                Utterance(
                    str(audio), info.duration, row.get("sentence") or "", source=f"{tsv}:{number}"
                )
            )
    return out


def read_dataset(path: str | Path) -> list[Utterance]:
    """Labelled data from any supported description: ``.jsonl``/``.json`` manifest,
    ``.tsv`` (Common Voice) or a LibriSpeech-style folder."""
    path = Path(path)
    if path.is_dir():
        return read_librispeech(path)
    if path.suffix.lower() == ".tsv":
        return read_common_voice(path)
    if path.suffix.lower() in {".jsonl", ".json"}:
        return read_manifest(path)
    raise ManifestError(
        f"{path}: unknown data description; expected a .jsonl manifest, a Common Voice "
        f".tsv, or a LibriSpeech-style folder"
    )


def iter_audio_inputs(inputs: str | Path | Iterable[str | Path]) -> Iterator[Utterance]:
    """Audio to transcribe, unlabelled: a folder (searched recursively for audio files), a
    list file (``.txt``/``.lst``: one path a line, ``#`` comments), a manifest, or paths."""
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    for item in inputs:
        path = Path(item)
        suffix = path.suffix.lower()
        if path.is_dir():
            for found in sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES):
                yield Utterance(str(found), 0.0, source=str(path))
        elif suffix in {".jsonl", ".json"}:
            yield from read_manifest(path)
        elif suffix in {".txt", ".lst", ".list"}:
            if not path.is_file():
                raise ManifestError(f"{path}: list file not found")
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                entry = line.strip()
                if entry and not entry.startswith("#"):
                    audio = Path(entry) if Path(entry).is_absolute() else path.parent / entry
                    yield Utterance(str(audio), 0.0, source=f"{path}:{number}")
        else:
            yield Utterance(str(path), 0.0, source=str(path))
