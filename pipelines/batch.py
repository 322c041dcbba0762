"""Batch inference on Ray Data: an actor pool that loads the model once per actor.

Work items (contigs, variant batches, audio files) become a dataset of one row each; every
actor of the pool unpacks the model directory shipped through the object store (so nodes
need no shared copy of it), and maps items to results. The driver consumes results as they
arrive and writes one shard per item, so an interrupted run loses only the items in flight.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gfssm.pipelines.ray_session import check_fits
from gfssm.tasks.pretrained import META_FILE, WEIGHTS_FILE, LoadedModel, load_model


@dataclass(frozen=True)
class PoolSpec:
    """Actors and what each holds: CPUs (also its torch threads) and GPUs."""

    actors: int = 1
    cpus: float | None = None
    gpus: float | None = None

    def resolve(self) -> PoolSpec:
        """Fill unset sizes from the cluster: one GPU per actor when there are GPUs; else
        CPUs split between the actors, leaving half a CPU to Ray Data's own tasks (a pool
        that takes every CPU can starve them)."""
        import ray

        total = ray.cluster_resources()
        gpus = self.gpus if self.gpus is not None else (1.0 if total.get("GPU", 0) else 0.0)
        if self.cpus is not None:
            cpus = self.cpus
        else:
            spare = max(0.5, total.get("CPU", 1.0) - 0.5)
            cpus = max(0.25, min(4.0, spare / self.actors))
        check_fits(
            cpus=self.actors * cpus,
            gpus=self.actors * gpus,
            what=f"an actor pool of {self.actors} x ({cpus:g} CPU, {gpus:g} GPU)",
            hint="use fewer actors (--actors) or a bigger cluster",
        )
        return PoolSpec(self.actors, cpus, gpus)


def pack_model(model_dir: Path) -> dict[str, bytes]:
    """The files of a model directory, to ship to actors through the object store."""
    return {name: (model_dir / name).read_bytes() for name in (WEIGHTS_FILE, META_FILE)}


def resolve_arg(value):
    """An actor constructor argument: object references arrive unresolved."""
    import ray

    return ray.get(value) if isinstance(value, ray.ObjectRef) else value


def unpack_model(files, threads: int) -> LoadedModel:
    """In an actor: write the shipped files to a temp dir and load them (GPU if any)."""
    import torch

    files = resolve_arg(files)
    torch.set_num_threads(max(1, threads))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory(prefix="gfssm-model-") as tmp:  # read fully, then gone
        for name, data in files.items():
            (Path(tmp) / name).write_bytes(data)
        return load_model(tmp, map_location=device)


def run_pool(
    items: Sequence[dict[str, Any]],
    actor: type,
    constructor_args: tuple,
    pool: PoolSpec,
) -> Iterator[dict[str, Any]]:
    """Map ``items`` (JSON-able dicts) through ``actor`` instances; yield result rows as
    they arrive (any order). An actor's ``__call__`` gets and returns column batches."""
    import ray.data

    if not items:
        return
    spec = pool.resolve()
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the caller shows its own bar, in items or bases
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    rows = [{"item": json.dumps(item)} for item in items]
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows))
    mapped = dataset.map_batches(
        actor,
        fn_constructor_args=(*constructor_args, int(max(1, math.floor(spec.cpus)))),
        compute=ray.data.ActorPoolStrategy(size=spec.actors),
        num_cpus=spec.cpus,
        num_gpus=spec.gpus or None,
        batch_size=1,
        batch_format="numpy",
    )
    for batch in mapped.iter_batches(batch_size=1, batch_format="numpy"):
        yield {key: values[0] for key, values in batch.items()}


def npz_bytes(**arrays: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def npz_arrays(data: bytes) -> dict[str, np.ndarray]:
    import io

    with np.load(io.BytesIO(data)) as loaded:
        return {name: loaded[name] for name in loaded.files}


class JsonShards:
    """Per-shard JSON results in a folder, written atomically; a rerun skips done shards.

    ``manifest`` describes the run (inputs, model, options); a folder holding shards of a
    different run is an error instead of a silent mix."""

    def __init__(self, folder: Path, manifest: dict[str, Any]) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / "run.json"
        if path.exists():
            previous = json.loads(path.read_text())
            if previous != manifest:
                changed = sorted(
                    k for k in set(previous) | set(manifest) if previous.get(k) != manifest.get(k)
                )
                raise ValueError(
                    f"{self.folder} holds shards of another run (differs in {changed}); use "
                    f"another output path or delete that folder"
                )
        else:
            path.write_text(json.dumps(manifest, indent=1, sort_keys=True))

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def done(self, key: str) -> bool:
        return self._path(key).exists()

    def write(self, key: str, value: Any) -> None:
        tmp = self._path(key).with_suffix(".json.partial")
        tmp.write_text(json.dumps(value))
        os.replace(tmp, self._path(key))

    def read(self, key: str) -> Any:
        return json.loads(self._path(key).read_text())


def file_identity(path: Path) -> dict[str, Any]:
    """What makes an input file 'the same' for resuming: absolute path, size, mtime."""
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def progress_bar(total: int, unit: str, desc: str) -> Callable[[int], None] | Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit=unit, unit_scale=unit == "base", desc=desc, dynamic_ncols=True)
