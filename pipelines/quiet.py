"""Third-party noise kept out of the user's console: only what the user must act on.

Ray, MLflow and their dependencies print warnings meant for their own developers (deprecated
internals, telemetry, log deduplication, the local token-authentication notice) between
our progress lines. They are filtered here, once, when the command starts; ``--debug``
leaves Python warnings visible.
"""

from __future__ import annotations

import logging
import os
import re
import warnings

_ENV_DEFAULTS = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",  # else every worker print shows twice
    "RAY_DEDUP_LOGS": "0",  # "[repeated Nx across cluster]" lines
    "RAY_DATA_DISABLE_PROGRESS_BARS": "1",  # our own bar counts bases, seconds or files
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "RAY_AIR_NEW_OUTPUT": "0",
    "PYTHONWARNINGS": "ignore::DeprecationWarning,ignore::FutureWarning",  # Ray workers
}

_MESSAGES = (
    r".*[Tt]oken authentication.*",
    r".*constructor arguments in the object store.*",
    r".*object store is using /tmp.*",
    r".*pkg_resources is deprecated.*",
    r".*`torch\.cuda\.amp.*",
    r".*An input example was not provided.*",
    r".*minimum number of concurrent actors.*",
    r".*Failed to fetch metrics for \d+ trial.*",  # Tune's analysis; our table has them
    r".*Detected that the Ray Train controller actor.*",  # cleanup after a finished trial
    r".*Failed to resolve installed pip version.*",
)

_LOGGERS = ("ray", "ray.data", "ray.train", "ray.tune", "ray._private", "mlflow", "alembic")


class _DropMessages(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not _matches(text)


_COMPILED = tuple(re.compile(pattern, flags=re.S) for pattern in _MESSAGES)


def _matches(text: str) -> bool:
    return any(pattern.match(text) for pattern in _COMPILED)


def quiet_ray() -> None:
    """After ``import ray``: Ray logs through handlers of its own on the ``ray`` logger, so
    the filter goes on those handlers (records of child loggers reach them by propagation)."""
    drop = _DropMessages()
    for handler in logging.getLogger("ray").handlers:
        handler.addFilter(drop)
    _filter_forwarded_worker_lines()


def _filter_forwarded_worker_lines() -> None:
    """Lines that Ray's own actors (e.g. Ray Train's controller) print are forwarded to this
    console through one function of Ray's driver; drop the internal notices there too."""
    try:
        from ray._private import worker as ray_worker
    except ImportError:
        return
    original = getattr(ray_worker, "print_worker_logs", None)
    if original is None or getattr(original, "gfssm_filtered", False):
        return

    def filtered(data, print_file, ignore_prefix=False):
        lines = [line for line in data.get("lines", []) if not _matches(line)]
        if lines:
            original({**data, "lines": lines}, print_file, ignore_prefix)

    filtered.gfssm_filtered = True  # type: ignore[attr-defined]
    ray_worker.print_worker_logs = filtered


def quiet_third_party() -> None:
    for key, value in _ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    for pattern in _MESSAGES:
        warnings.filterwarnings("ignore", message=pattern)
    drop = _DropMessages()
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        logger.addFilter(drop)
        if name in ("mlflow", "alembic"):
            logger.setLevel(logging.ERROR)
