"""Speech on Ray Data: transcribe audio files and evaluate a labelled manifest.

Files are grouped as the speech task's single-process path groups them (``batch_files`` in
input order), each group is one work item that an actor runs through the task's own
functions (:func:`~gfssm.tasks.asr.transcribe.transcribe_batch`,
:func:`~gfssm.tasks.asr.transcribe.evaluate_manifest`), and each finished group is written as
a shard, so results equal the single-process ones and a rerun skips finished groups.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gfssm.pipelines.batch import (
    JsonShards,
    PoolSpec,
    pack_model,
    progress_bar,
    resolve_arg,
    run_pool,
    unpack_model,
)
from gfssm.pipelines.errors import GFSSMUserError
from gfssm.pipelines.speech_decoding import DecodingOptions, build_decoder
from gfssm.tasks.pretrained import LoadedModel, load_model


class SpeechError(GFSSMUserError, ValueError):
    pass


def _speech_model(model_dir: Path) -> LoadedModel:
    loaded = load_model(model_dir)
    if loaded.task.name != "asr":
        raise SpeechError(f"{model_dir}: a {loaded.task.name!r} model; this needs an asr model")
    return loaded


def _fingerprint(model_dir: Path) -> str:
    import hashlib

    return hashlib.sha1((model_dir / "model.pt").read_bytes()).hexdigest()


def transcribe_one(loaded: LoadedModel, path: str) -> dict[str, Any]:
    """One file, as the pyfunc serves it."""
    from gfssm.tasks.asr.transcribe import transcribe_file

    return transcribe_file(loaded.model, path).to_json()


class Transcriber:
    """Actor: loads the model and builds its decoder once; transcribes one group of files
    per call."""

    def __init__(self, model_files, decoding, threads) -> None:
        self.loaded = unpack_model(model_files, threads)
        self.decoder = build_decoder(resolve_arg(decoding), self.loaded.model.frame_seconds)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from gfssm.tasks.asr.manifests import Utterance
        from gfssm.tasks.asr.transcribe import TranscriptionFailure, transcribe_batch

        out = []
        for text in batch["item"]:
            group = json.loads(text)
            utts = [Utterance(**u) for u in group["utterances"]]
            results = transcribe_batch(self.loaded.model, utts, decoder=self.decoder)
            out.append(
                json.dumps(
                    {
                        "key": group["key"],
                        "results": [
                            {"failed": isinstance(r, TranscriptionFailure), **r.to_json()}
                            for r in results
                        ],
                    }
                )
            )
        return {"item": batch["item"], "result": np.array(out, dtype=object)}


def _groups(utts: Sequence, size: int) -> list[tuple[str, list]]:
    return [(f"{i // size:06d}", list(utts[i : i + size])) for i in range(0, len(utts), size)]


def _utt_json(utt) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(utt)


def transcribe(
    model_dir: Path,
    inputs: Sequence[str],
    out_jsonl: Path,
    *,
    batch_files: int = 16,
    decoding: DecodingOptions | None = None,
    pool: PoolSpec | None = None,
    log: Callable[[str], None] = print,
    connect: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Transcribe ``inputs`` (files, folders, list files, manifests) into ``out_jsonl`` (one
    JSON line per file, input order); failures go to ``<out>.failed.jsonl``."""
    decoding = decoding or DecodingOptions()
    import ray

    from gfssm.tasks.asr.manifests import iter_audio_inputs
    from gfssm.tasks.asr.transcribe import FAILED_SUFFIX

    _speech_model(model_dir)
    utts = list(iter_audio_inputs(list(inputs)))
    if not utts:
        raise SpeechError(f"no audio found in {list(inputs)}")
    groups = _groups(utts, batch_files)
    shards = JsonShards(
        Path(f"{out_jsonl}.shards"),
        {
            "model": _fingerprint(model_dir),
            "batch_files": batch_files,
            "decoding": decoding.fingerprint(),
            "inputs": [u.audio_filepath for u in utts],
        },
    )
    todo = [
        {"key": k, "utterances": [_utt_json(u) for u in g]} for k, g in groups if not shards.done(k)
    ]
    log(
        f"{len(utts)} files in {len(groups)} groups ({len(groups) - len(todo)} already done); "
        f"{decoding.describe()}"
    )
    connect()
    files = ray.put(pack_model(model_dir))
    packed_decoding = ray.put(decoding.pack())
    start = time.perf_counter()
    with progress_bar(sum(len(t["utterances"]) for t in todo), "file", "transcribing") as bar:
        for row in run_pool(todo, Transcriber, (files, packed_decoding), pool or PoolSpec()):
            result = json.loads(row["result"])
            shards.write(result["key"], result["results"])
            bar.update(len(result["results"]))
    rows = [r for key, _ in groups for r in shards.read(key)]
    done = [{k: v for k, v in r.items() if k != "failed"} for r in rows if not r["failed"]]
    failed = [{k: v for k, v in r.items() if k != "failed"} for r in rows if r["failed"]]
    out_jsonl.parent.mkdir(parents=True, exist_ok=True)
    _write_jsonl(out_jsonl, done)
    failed_path = out_jsonl.with_name(out_jsonl.stem + FAILED_SUFFIX)
    if failed:
        _write_jsonl(failed_path, failed)
    elif failed_path.exists():
        failed_path.unlink()
    audio = sum(r["duration"] for r in done)
    wall = time.perf_counter() - start
    return {
        "written": len(done),
        "failed": len(failed),
        "failed_path": failed_path if failed else None,
        "audio_seconds": audio,
        "wall_seconds": wall,
    }


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    tmp.replace(path)


class Evaluator:
    """Actor: loads the model once; evaluates one group of labelled utterances per call
    (through the task's :func:`evaluate_manifest` on a manifest of that group)."""

    def __init__(self, model_files, decoding, threads) -> None:
        self.loaded = unpack_model(model_files, threads)
        self.decoder = build_decoder(resolve_arg(decoding), self.loaded.model.frame_seconds)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from gfssm.tasks.asr.manifests import Utterance, write_manifest
        from gfssm.tasks.asr.transcribe import evaluate_manifest

        out = []
        for text in batch["item"]:
            group = json.loads(text)
            with tempfile.TemporaryDirectory(prefix="gfssm-eval-") as tmp:
                manifest = write_manifest(
                    [Utterance(**u) for u in group["utterances"]], Path(tmp) / "group.jsonl"
                )
                rows_path = Path(tmp) / "rows.jsonl"
                evaluate_manifest(
                    self.loaded.model,
                    manifest,
                    out_jsonl=rows_path,
                    batch_files=len(group["utterances"]),
                    decoder=self.decoder,
                )
                rows = [json.loads(line) for line in rows_path.read_text("utf-8").splitlines()]
            out.append(json.dumps({"key": group["key"], "rows": rows}))
        return {"item": batch["item"], "result": np.array(out, dtype=object)}


def evaluate(
    model_dir: Path,
    data: str,
    *,
    out_jsonl: Path | None = None,
    batch_files: int = 16,
    decoding: DecodingOptions | None = None,
    pool: PoolSpec | None = None,
    log: Callable[[str], None] = print,
    connect: Callable[[], None] = lambda: None,
) -> dict[str, float]:
    """CER/WER of the model on labelled ``data`` (manifest, LibriSpeech folder or Common
    Voice TSV), computed like the task's single-process evaluation."""
    import ray

    from gfssm.tasks.asr.manifests import read_dataset
    from gfssm.tasks.asr.metrics import ErrorRates

    _speech_model(model_dir)
    utts = read_dataset(data)
    groups = _groups(utts, batch_files)
    todo = [{"key": k, "utterances": [_utt_json(u) for u in g]} for k, g in groups]
    decoding = decoding or DecodingOptions()
    log(f"{len(utts)} utterances in {len(groups)} groups; {decoding.describe()}")
    connect()
    files = ray.put(pack_model(model_dir))
    packed_decoding = ray.put(decoding.pack())
    by_key: dict[str, list[dict]] = {}
    with progress_bar(len(utts), "utt", "evaluating") as bar:
        for row in run_pool(todo, Evaluator, (files, packed_decoding), pool or PoolSpec()):
            result = json.loads(row["result"])
            by_key[result["key"]] = result["rows"]
            bar.update(len(result["rows"]))
    rows = [r for key, _ in groups for r in by_key[key]]
    rates, failures = ErrorRates(), 0
    for r in rows:
        if "error" in r:
            failures += 1
        else:
            rates.add(r["reference"], r["hypothesis"])
    if out_jsonl is not None:
        out_jsonl.parent.mkdir(parents=True, exist_ok=True)
        _write_jsonl(out_jsonl, rows)
    return {**rates.summary(), "failed": float(failures)}
