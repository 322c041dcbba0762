"""Any task's batch job on Ray Data: an actor pool that loads the model once per actor.

The job (a :class:`gfssm.tasks.BatchJob`) is planned and checked in the driver. Its work
items become a dataset of one row each; every actor unpacks the model directory shipped
through the object store (so nodes need no shared copy), builds the job's worker once and
maps items to result bytes. The driver writes one shard per finished item as results arrive,
so Ctrl-C, a lost node or a full disk loses only the items in flight, and the same command
run again resumes. A job whose items are all done is finished without starting Ray.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import signal
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from gfssm.pipelines.errors import GFSSMUserError
from gfssm.pipelines.shards import DiskFullError, ShardStore, disk_full, model_fingerprint
from gfssm.tasks.jobs import BatchJob, TaskInputError, WorkItem
from gfssm.tasks.pretrained import META_FILE, WEIGHTS_FILE, LoadedModel, load_model

Log = Callable[[str], None]
E = TypeVar("E", bound=BaseException)
_EXIT_GRACE_S = 5.0  # after Ctrl-C, how long Ray gets to stop before the process exits
MAX_WORKER_DEATHS = 2  # a pool is restarted this many times in a row, then the job stops


class JobError(GFSSMUserError, RuntimeError):
    pass


@dataclass(frozen=True)
class PoolSpec:
    """Actors and what each holds: CPUs (also its torch threads) and GPUs."""

    actors: int = 1
    cpus: float | None = None
    gpus: float | None = None

    def __post_init__(self) -> None:
        if self.actors < 1:
            raise JobError(f"--actors {self.actors}: expected 1 or more")

    def resolve(self, log: Log) -> PoolSpec:
        """Fill unset sizes from the cluster: one GPU per actor when there are GPUs; else the
        CPUs split between the actors, leaving half a CPU to Ray Data's own tasks (a pool
        that takes every CPU starves them). Sizes that do not fit are shrunk, with a notice."""
        import ray

        total = ray.cluster_resources()
        have_cpu, have_gpu = total.get("CPU", 1.0), total.get("GPU", 0.0)
        gpus = self.gpus if self.gpus is not None else (1.0 if have_gpu else 0.0)
        spare = max(0.5, have_cpu - 0.5)
        cpus = self.cpus if self.cpus is not None else max(0.25, min(4.0, spare / self.actors))
        if self.actors * cpus > spare + 1e-9:
            fitted = max(0.1, spare / self.actors)
            log(
                f"note: {self.actors} actors x {cpus:g} CPU do not fit next to Ray Data's "
                f"readers on {have_cpu:g} CPU; using {fitted:.2g} CPU each"
            )
            cpus = fitted
        if self.actors * gpus > have_gpu + 1e-9:
            raise JobError(
                f"{self.actors} actors x {gpus:g} GPU, but the cluster has {have_gpu:g} GPU; "
                f"use fewer --actors or --gpus-per-actor"
            )
        return PoolSpec(self.actors, cpus, gpus)


def pack_model(model_dir: Path) -> dict[str, bytes]:
    """The files of a model directory, to ship to actors through the object store."""
    return {name: (Path(model_dir) / name).read_bytes() for name in (WEIGHTS_FILE, META_FILE)}


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


class JobActor:
    """A Ray Data actor: the model and the job's worker, built once; one item per call."""

    def __init__(self, shipped: dict[str, Any], threads: int) -> None:
        # The job and the model travel as object references inside a small dict, resolved
        # here (Ray resolves only references passed as arguments themselves).
        self.job: BatchJob = resolve_arg(shipped["job"])
        self.work = self.job.make_worker(unpack_model(shipped["model"], threads))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = [self.work(json.loads(text)) for text in batch["payload"]]
        return {"key": batch["key"], "result": np.array(results, dtype=object)}


def run_pool(
    items: Sequence[WorkItem], job_ref, model_ref, pool: PoolSpec
) -> Iterator[tuple[str, bytes]]:
    """(key, result bytes) of every item, as they arrive (any order)."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the runner shows one bar, in the job's unit
    context.print_on_execution_start = False
    # Errors come back as exceptions, which run_job reports in one line (or recovers from).
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)
    rows = [{"key": i.key, "payload": json.dumps(i.payload)} for i in items]
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows))
    with warnings.catch_warnings():
        # Ray 2.60 has no named parameter for max_restarts yet (Ray is pinned).
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        mapped = dataset.map_batches(
            JobActor,
            fn_constructor_args=(
                {"job": job_ref, "model": model_ref},
                int(max(1, math.floor(pool.cpus or 1))),
            ),
            compute=ray.data.ActorPoolStrategy(size=pool.actors),
            num_cpus=pool.cpus,
            num_gpus=pool.gpus or None,
            batch_size=1,
            batch_format="numpy",
            # Ray Data hands its own state to its actors as object references; with
            # restarts on, Ray prints an alarming error line about that for every actor.
            # run_job starts new workers instead when one dies (finished items are on disk).
            max_restarts=0,
        )
    for batch in mapped.iter_batches(batch_size=1, batch_format="numpy"):
        yield str(batch["key"][0]), bytes(batch["result"][0])


def _first_in_chain(err: BaseException, kind: type[E]) -> E | None:
    """The first exception of type ``kind`` in ``err``'s chain: Ray's own ``cause`` (a task
    error's original exception), then ``__cause__`` and ``__context__``."""
    seen: set[int] = set()
    node: BaseException | None = err
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        if isinstance(node, kind):
            return node
        node = getattr(node, "cause", None) or node.__cause__ or node.__context__
    return None


def _worker_death(err: BaseException) -> str | None:
    """What Ray says of a pool actor that died (killed, out of memory), or None."""
    from ray.exceptions import RayActorError

    died = _first_in_chain(err, RayActorError)
    if died is None or getattr(died, "_actor_init_failed", False):
        return None  # no death, or its constructor raised: an error to show, not a death
    pid = re.search(r"\bpid: (\d+)", str(getattr(died, "error_msg", "")))
    return f"pid {pid.group(1) if pid else '?'}: killed, crashed or out of memory"


def _task_error(err: BaseException) -> TaskInputError | None:
    """The task's input error behind a Ray error (bad record found inside an actor)."""
    return _first_in_chain(err, TaskInputError)


class _StopOnInterrupt:
    """Ctrl-C stops the job within seconds whatever Ray is doing: the first press raises
    KeyboardInterrupt in the main thread; if the process is still alive a few seconds later
    (Ray blocked in native code) it exits. Finished shards are already on disk."""

    def __enter__(self):
        self.previous = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        timer = threading.Timer(_EXIT_GRACE_S, lambda: os._exit(130))
        timer.daemon = True
        timer.start()
        raise KeyboardInterrupt

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGINT, self.previous)


def run_job(
    job: BatchJob,
    model_dir: Path,
    *,
    pool: PoolSpec,
    connect: Callable[[], None],
    log: Log,
) -> int:
    """Plan, run the missing items on an actor pool, and finish ``job``."""
    items = job.plan()
    keys = [i.key for i in items]
    if len(set(keys)) != len(keys):
        raise JobError(f"{type(job).__name__}: work item keys are not unique")
    store = ShardStore(
        job.shard_dir(),
        {
            "job": f"{type(job).__module__}.{type(job).__qualname__}",
            "inputs": job.fingerprint(),
            "model": model_fingerprint(model_dir),
        },
    )
    todo = [i for i in items if not store.done(i.key)]
    summary = job.summary()
    if summary:
        log(summary)
    if not todo:
        log(f"all {len(items)} work items already done ({store.folder}); writing the outputs")
        return _finish(job, store, log)
    log(f"{len(items)} work items ({len(items) - len(todo)} already done) in {store.folder}")
    connect()  # inputs are checked: now start or join Ray
    import ray

    spec = pool.resolve(log)
    if spec.actors > len(todo):  # an actor per item at most: more would only load the model
        spec = PoolSpec(len(todo), spec.cpus, spec.gpus)
    job_ref, model_ref = ray.put(job), ray.put(pack_model(model_dir))
    size = {i.key: i.size for i in todo}
    kept = len(items) - len(todo)
    deaths = 0  # worker deaths in a row without a finished item in between
    with _StopOnInterrupt(), progress_bar(sum(size.values()), job.unit, job.description) as bar:
        while todo:
            try:
                for key, result in run_pool(todo, job_ref, model_ref, spec):
                    store.write(key, result)
                    kept += 1
                    deaths = 0
                    bar.update(size[key])
                break
            except KeyboardInterrupt:
                bar.close()
                log(
                    f"interrupted: {kept} of {len(items)} work items are kept in "
                    f"{store.folder}; run the same command again to resume"
                )
                raise
            except (GFSSMUserError, TaskInputError):
                raise
            except Exception as err:
                cause = _task_error(err)
                if cause is not None:
                    raise cause from None
                died = _worker_death(err)
                if died is None:
                    raise
                deaths += 1
                todo = [i for i in todo if not store.done(i.key)]
                what = f"a worker process died ({died})"
                if deaths > MAX_WORKER_DEATHS:
                    raise JobError(
                        f"{what}, {deaths} times in a row; {kept} of {len(items)} work items "
                        f"are kept in {store.folder}. Out of memory? Try fewer --actors, then "
                        f"run the same command again to resume"
                    ) from None
                bar.write(f"{what}; starting new workers for the {len(todo)} items left")
    return _finish(job, store, log)


def progress_bar(total: float, unit: str, desc: str):
    from tqdm.auto import tqdm

    scale = unit in ("base", "bp")
    return tqdm(total=total, unit=unit, unit_scale=scale, desc=desc, dynamic_ncols=True)


def _finish(job: BatchJob, store: ShardStore, log: Log) -> int:
    try:
        return job.finish(store.read, log)
    except OSError as err:
        if disk_full(err):
            raise DiskFullError(
                f"disk full while writing the outputs ({err.filename or err}); every work item "
                f"is kept in {store.folder}: free some space and rerun the same command"
            ) from None
        raise
