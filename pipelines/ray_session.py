"""Connecting to Ray: an existing cluster (``--address`` / ``RAY_ADDRESS``) or a local one.

A local Ray starts with its dashboard on 127.0.0.1 (Tune needs the dashboard to release the
placement groups of stopped trials). A cluster address that does not answer is reported
within seconds instead of waiting on Ray's own connection retries. A local Ray cannot grow:
worker groups are sized to what it has.
"""

from __future__ import annotations

import logging
import os
import socket
from urllib.parse import urlparse

from gfssm.pipelines.config import Experiment
from gfssm.pipelines.errors import RayConnectionError

ADDRESS_ENV = "RAY_ADDRESS"
DEFAULT_DASHBOARD = "http://127.0.0.1:8265"


def _host_port(address: str, default_port: int) -> tuple[str, int]:
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    if not parsed.hostname:
        raise RayConnectionError(f"Ray address {address!r}: expected HOST:PORT or a URL")
    return parsed.hostname, parsed.port or default_port


def check_reachable(address: str, *, default_port: int, timeout: float = 3.0, what: str) -> None:
    """Open and close one TCP connection to ``address``; raise a clear error when refused."""
    host, port = _host_port(address, default_port)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as err:
        raise RayConnectionError(
            f"{what} at {address} is not reachable ({err.strerror or err}). Check that the "
            f"cluster is up, the address and port are right, and the port is open to you"
        ) from None


def connect(address: str | None = None, *, num_cpus: float | None = None) -> str | None:
    """``ray.init`` once per process: to ``address`` / ``RAY_ADDRESS`` or a new local Ray.
    Returns the dashboard URL when Ray knows it."""
    import ray

    from gfssm.pipelines.quiet import quiet_ray

    quiet_ray()
    address = address or os.environ.get(ADDRESS_ENV) or None
    remote = bool(address) and address not in ("auto", "local")
    if remote:
        if address.startswith(("http://", "https://")):
            raise RayConnectionError(
                f"Ray address {address} is a dashboard (Jobs API) URL: use it with "
                f"`gfssm submit --address {address}`; to run here against that cluster, pass "
                f"its GCS address (HOST:6379) or run inside a job"
            )
        check_reachable(
            address,
            default_port=10001 if address.startswith("ray://") else 6379,
            what="Ray cluster",
        )
    if ray.is_initialized():
        return None
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")  # inherited by local workers
    quiet = dict(logging_level=logging.WARNING, log_to_driver=True)
    if remote:
        context = ray.init(address=address, **quiet)
    elif address == "auto":
        try:
            context = ray.init(address="auto", **quiet)
        except ConnectionError as err:
            raise RayConnectionError(
                f"RAY_ADDRESS=auto but no Ray cluster runs here: {err}"
            ) from None
    else:
        context = ray.init(
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            num_cpus=num_cpus,
            **quiet,
        )
    url = getattr(context, "dashboard_url", None)
    return f"http://{url}" if url and "://" not in url else url


def cluster_has_gpus() -> bool:
    import ray

    return ray.cluster_resources().get("GPU", 0) > 0


def resolve_use_gpu(experiment: Experiment) -> bool:
    choice = experiment.train.use_gpu
    return cluster_has_gpus() if choice == "auto" else bool(choice)


def fit_to_cluster(
    experiment: Experiment, log, extra_cpus: float = 0.0, share: int = 1
) -> Experiment:
    """The local Ray cannot grow: size the worker group to what it has (CPUs per worker
    shrunk, then workers, with a one-line notice) instead of waiting forever. ``share``
    groups run at once (concurrent Tune trials), each with ``extra_cpus`` for its driver."""
    import ray

    train = experiment.train
    total = ray.cluster_resources()
    have_cpu, have_gpu = total.get("CPU", 0.0), total.get("GPU", 0.0)
    workers, cpus = train.num_workers, train.cpus_per_worker
    if resolve_use_gpu(experiment) and workers > have_gpu:
        log(f"note: {workers} training workers but {have_gpu:g} GPU; using {int(have_gpu)}")
        workers = max(1, int(have_gpu))
    room = have_cpu / share - extra_cpus
    if workers * cpus <= room + 1e-9:
        if workers == train.num_workers:
            return experiment
    else:
        while workers > 1 and room / workers < 0.25:
            workers -= 1
        fitted = max(0.1, int(room / workers * 100) / 100)
        log(
            f"note: {train.num_workers} training workers x {train.cpus_per_worker:g} CPU do "
            f"not fit in this Ray's {have_cpu:g} CPU"
            + (f" (with {extra_cpus:g} for each trial's driver)" if extra_cpus else "")
            + (f" ({share} trials at a time)" if share > 1 else "")
            + f"; using {workers} x {fitted:g} CPU"
        )
        cpus = fitted
    update = {"num_workers": workers, "cpus_per_worker": cpus}
    return experiment.model_copy(update={"train": train.model_copy(update=update)})
