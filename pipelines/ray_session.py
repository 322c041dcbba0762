"""Connecting to Ray: an existing cluster (``--address`` / ``RAY_ADDRESS``) or a local one.

A local Ray starts with its dashboard on 127.0.0.1 (Tune needs the dashboard to release the
placement groups of stopped trials). A cluster address that does not answer is reported
within seconds instead of waiting on Ray's own connection retries.
"""

from __future__ import annotations

import logging
import os
import socket
from urllib.parse import urlparse

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


def check_fits(*, cpus: float, gpus: float, what: str, hint: str) -> None:
    """On a fixed-size Ray (no autoscaler), fail now instead of waiting forever for
    resources that will never exist."""
    import ray

    total = ray.cluster_resources()
    have_cpu, have_gpu = total.get("CPU", 0.0), total.get("GPU", 0.0)
    if cpus > have_cpu + 1e-9 or gpus > have_gpu + 1e-9:
        raise RayConnectionError(
            f"{what} needs {cpus:g} CPU and {gpus:g} GPU but this Ray cluster has "
            f"{have_cpu:g} CPU and {have_gpu:g} GPU in all; {hint}"
        )


def cluster_has_gpus() -> bool:
    import ray

    return ray.cluster_resources().get("GPU", 0) > 0
