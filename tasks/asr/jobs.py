"""The speech task's batch jobs: ``gfssm transcribe`` and ``gfssm eval asr``.

Files are cut into groups of ``batch_files`` in input order; each group is one work item
that an actor runs through the task's own functions
(:func:`~gfssm.tasks.asr.transcribe.transcribe_batch`,
:func:`~gfssm.tasks.asr.transcribe.evaluate_utterances`), so results equal the
single-process ones. The lexicon and language model are read once in the driver and travel
inside the job, so cluster nodes need no copy of them.

``gfssm transcribe --format`` chooses what :meth:`TranscribeJob.finish` writes from the
stored results (JSONL, SubRip, WebVTT, CTM); it is not part of the fingerprint, so asking
for another format later writes it from the finished shards without decoding again.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gfssm.tasks.asr.decoding_options import DecodingOptions
from gfssm.tasks.asr.manifests import Utterance
from gfssm.tasks.asr.subtitles import FORMATS, write_text_atomic
from gfssm.tasks.jobs import BatchJob, Log, TaskInputError, WorkItem

FAILED_SUFFIX = ".failed.jsonl"
# Failures listed one a line in the console; the rest are only in the failure file.
SHOWN_FAILURES = 10


def _file_identity(path: str) -> list[Any]:
    try:
        stat = Path(path).stat()
    except OSError:
        return [path, None, None]
    return [path, stat.st_size, stat.st_mtime_ns]


def _groups(utts: Sequence[Utterance], size: int) -> list[WorkItem]:
    return [
        WorkItem(
            key=f"{i // size:06d}",
            payload={"utterances": [asdict(u) for u in utts[i : i + size]]},
            size=float(len(utts[i : i + size])),
        )
        for i in range(0, len(utts), size)
    ]


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    tmp.replace(path)


def _show_failures(rows: list[dict[str, Any]], where: Path | None, log: Log) -> None:
    for row in rows[:SHOWN_FAILURES]:
        log(f"  {row['error']}")
    more = len(rows) - SHOWN_FAILURES
    if more > 0:
        log(f"  ... and {more} more" + (f" (all in {where})" if where else ""))


def _check_batch_files(value: int) -> int:
    if value < 1:
        raise TaskInputError(f"--batch-files {value}: expected a positive number of files")
    return value


def parse_formats(value: str) -> tuple[str, ...]:
    """``--format`` (a comma list of ``jsonl``, ``srt``, ``vtt``, ``ctm``) in the order of
    :data:`~gfssm.tasks.asr.subtitles.FORMATS`, without repeats."""
    given = [f.strip().lower() for f in value.split(",") if f.strip()]
    unknown = [f for f in given if f not in FORMATS]
    if unknown or not given:
        raise TaskInputError(
            f"--format {value}: expected a comma list of {', '.join(FORMATS)} "
            f"(e.g. --format jsonl,srt)"
        )
    return tuple(f for f in FORMATS if f in given)


@dataclass
class _UtteranceGroupsJob(BatchJob):
    """What transcription and evaluation share: ``utterances`` decoded in groups of
    ``batch_files`` (input order) under ``decoding``, shards beside ``out``."""

    utterances: list[Utterance]
    out: Path
    batch_files: int = 16
    decoding: DecodingOptions = field(default_factory=DecodingOptions)

    def summary(self) -> str:
        return self.decoding.describe()

    def plan(self) -> list[WorkItem]:
        return _groups(self.utterances, self.batch_files)

    def shard_dir(self) -> Path:
        return Path(f"{self.out}.shards")


@dataclass
class TranscribeJob(_UtteranceGroupsJob):
    """Transcribe ``utterances``; ``formats`` (any of ``jsonl``, ``srt``, ``vtt``, ``ctm``)
    say what is written, all from the same results (:meth:`outputs` lists where):

    - ``jsonl``: ``out``, one JSON line per file, input order;
    - ``srt``/``vtt``: one subtitle file per audio file in the folders ``<out stem>.srt/``
      and ``<out stem>.vtt/``, named by :func:`~gfssm.tasks.asr.subtitles.subtitle_names`
      (``recordings/day1/talk.flac`` -> ``<out stem>.srt/day1/talk.srt``);
    - ``ctm``: ``<out stem>.ctm``, every file's words, by utterance id (the same name).

    Files that cannot be transcribed go to ``<out stem>.failed.jsonl`` with the reason and
    get no subtitle file (an earlier run's is removed). Every file is written whole to a
    temporary name and renamed."""

    formats: tuple[str, ...] = ("jsonl",)

    unit = "file"
    description = "transcribing"

    def fingerprint(self) -> dict[str, Any]:
        return {
            "job": "asr-transcribe",
            "batch_files": self.batch_files,
            "decoding": self.decoding.fingerprint(),
            "inputs": [_file_identity(u.audio_filepath) for u in self.utterances],
        }

    @property
    def failed_path(self) -> Path:
        return self.out.with_name(self.out.stem + FAILED_SUFFIX)

    def outputs(self) -> dict[str, Path]:
        """Where each format goes: a file (``jsonl``, ``ctm``) or a folder (``srt``,
        ``vtt``)."""
        where = {"jsonl": self.out}
        for name in ("srt", "vtt", "ctm"):
            where[name] = self.out.with_name(f"{self.out.stem}.{name}")
        return {name: where[name] for name in self.formats}

    def make_worker(self, loaded) -> Callable[[dict[str, Any]], bytes]:
        from gfssm.tasks.asr.transcribe import TranscriptionFailure, transcribe_batch

        model = loaded.model
        decoder = self.decoding.build_decoder(model.frame_seconds)

        def work(payload: dict[str, Any]) -> bytes:
            utts = [Utterance(**u) for u in payload["utterances"]]
            start = time.perf_counter()
            results = transcribe_batch(model, utts, decoder=decoder)
            rows = [{"failed": isinstance(r, TranscriptionFailure), **r.to_json()} for r in results]
            seconds = time.perf_counter() - start
            return json.dumps({"rows": rows, "seconds": seconds}).encode("utf-8")

        return work

    def finish(self, results: Callable[[str], bytes], log: Log) -> int:
        done, failed, compute = [], [], 0.0
        for item in self.plan():
            result = json.loads(results(item.key))
            compute += result["seconds"]
            for row in result["rows"]:
                clean = {k: v for k, v in row.items() if k != "failed"}
                (failed if row["failed"] else done).append(clean)
        outputs = self.outputs()
        if "jsonl" in outputs:
            _write_jsonl(self.out, done)
        if failed:
            _write_jsonl(self.failed_path, failed)
        elif self.failed_path.exists():
            self.failed_path.unlink()  # an earlier run's failures are all done now
        audio = sum(r["duration"] for r in done)
        rtf = compute / audio if audio else 0.0
        where = f" in {self.out}" if "jsonl" in outputs else ""
        log(f"{len(done)} transcripts{where} ({audio:.1f} s of audio, real-time factor {rtf:.3f})")
        for line in self._write_timed_outputs(done, failed, outputs):
            log(line)
        if failed:
            log(f"{len(failed)} file(s) could not be transcribed (listed in {self.failed_path}):")
            _show_failures(failed, self.failed_path, log)
        return 0 if done or not failed else 1

    def _write_timed_outputs(
        self, done: list[dict[str, Any]], failed: list[dict[str, Any]], outputs: dict[str, Path]
    ) -> list[str]:
        """The subtitle files and the CTM of the transcribed files; one log line each."""
        from gfssm.tasks.asr.subtitles import ctm_id, ctm_lines, subtitle_names
        from gfssm.tasks.asr.transcribe import TranscriptionResult

        if not set(outputs) - {"jsonl"}:
            return []
        # Names over every planned file (failed ones too), so that they do not move when
        # a file fails or comes back.
        paths = [u.audio_filepath for u in self.utterances]
        names = dict(zip(paths, subtitle_names(paths)))
        results = [TranscriptionResult.from_json(r) for r in done]
        lines = []
        for fmt, render, kind in (
            ("srt", lambda r: r.srt(), "SubRip"),
            ("vtt", lambda r: r.vtt(), "WebVTT"),
        ):
            if fmt not in outputs:
                continue
            folder = outputs[fmt]
            for result in results:
                target = folder / f"{names[result.audio_filepath]}.{fmt}"
                write_text_atomic(target, render(result))
            for row in failed:  # no subtitles of a file that failed, not even old ones
                if row["audio_filepath"] in names:
                    (folder / f"{names[row['audio_filepath']]}.{fmt}").unlink(missing_ok=True)
            lines.append(f"{kind} subtitles of {len(results)} file(s) in {folder}/")
        if "ctm" in outputs:
            ordered = sorted(results, key=lambda r: ctm_id(names[r.audio_filepath]))
            text = "".join(
                line + "\n"
                for r in ordered
                for line in ctm_lines(ctm_id(names[r.audio_filepath]), r.words, r.duration)
            )
            write_text_atomic(outputs["ctm"], text)
            words = sum(len(r.words) for r in results)
            lines.append(f"CTM of {words} word(s) in {outputs['ctm']}")
        return lines


@dataclass
class EvalAsrJob(_UtteranceGroupsJob):
    """CER/WER of a model on labelled ``utterances`` (from ``data``), computed like the
    task's single-process evaluation; per-utterance rows go to ``out``."""

    data: str = ""
    summary_numbers: dict[str, float] = field(default_factory=dict, init=False, repr=False)

    unit = "utt"
    description = "evaluating"

    def metrics(self) -> dict[str, float]:
        return self.summary_numbers

    def fingerprint(self) -> dict[str, Any]:
        return {
            "job": "asr-eval",
            "data": _file_identity(self.data),
            "batch_files": self.batch_files,
            "decoding": self.decoding.fingerprint(),
            "audio": [_file_identity(u.audio_filepath) for u in self.utterances],
        }

    def make_worker(self, loaded) -> Callable[[dict[str, Any]], bytes]:
        from gfssm.tasks.asr.transcribe import evaluate_utterances

        model = loaded.model
        decoder = self.decoding.build_decoder(model.frame_seconds)

        def work(payload: dict[str, Any]) -> bytes:
            utts = [Utterance(**u) for u in payload["utterances"]]
            start = time.perf_counter()
            rows, audio = evaluate_utterances(model, utts, decoder=decoder, batch_files=len(utts))
            seconds = time.perf_counter() - start
            return json.dumps({"rows": rows, "audio": audio, "seconds": seconds}).encode("utf-8")

        return work

    def finish(self, results: Callable[[str], bytes], log: Log) -> int:
        from gfssm.tasks.asr.transcribe import summarise_rows

        rows, audio, compute = [], 0.0, 0.0
        for item in self.plan():
            result = json.loads(results(item.key))
            rows.extend(result["rows"])
            audio += result["audio"]
            compute += result["seconds"]
        _write_jsonl(self.out, rows)
        summary = summarise_rows(rows)
        summary.update(audio_seconds=audio, real_time_factor=compute / audio if audio else 0.0)
        failed = [r for r in rows if "error" in r]
        log(
            f"WER {summary['wer']:.2%}  CER {summary['cer']:.2%}  on "
            f"{int(summary['utterances'])} utterances ({int(summary['reference_words'])} words) "
            f"of {self.data}; per utterance: {self.out}"
        )
        if failed:
            log(f"{len(failed)} utterance(s) could not be read and are not counted:")
            _show_failures(failed, self.out, log)
        self.summary_numbers = {
            k: float(v)
            for k, v in summary.items()
            if isinstance(v, (int, float)) and math.isfinite(v)
        }
        log(json.dumps(summary))
        return 0 if summary["utterances"] else 1


# Commands -------------------------------------------------------------------------------
