"""Ray Jobs: submit a ``gfssm`` command to a cluster, follow it, list, fetch logs, stop.

The project travels as a built wheel in the job's ``runtime_env`` (``py_modules``). Ray
installs such a wheel with ``pip install --target``, dependencies included, so the shipped
wheel has its ``Requires-Dist`` lines removed: the cluster's image provides torch, Ray and
MLflow, and the job gets exactly this checkout's gfssm (entry points included).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import os
import secrets
import shlex
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

import gfssm
from gfssm.pipelines.errors import SubmitError
from gfssm.pipelines.ray_session import DEFAULT_DASHBOARD, check_reachable
from gfssm.pipelines.tracking import JOB_ID_ENV, TRACKING_ENV, resolve_tracking_uri

JOBS_ADDRESS_ENV = "RAY_API_SERVER_ADDRESS"
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def jobs_address(explicit: str | None = None) -> str:
    """``--address``, else ``RAY_API_SERVER_ADDRESS``, else an http ``RAY_ADDRESS``, else
    the local dashboard; checked to answer within seconds."""
    address = explicit or os.environ.get(JOBS_ADDRESS_ENV)
    if not address and os.environ.get("RAY_ADDRESS", "").startswith(("http://", "https://")):
        address = os.environ["RAY_ADDRESS"]
    address = address or DEFAULT_DASHBOARD
    if "://" not in address:
        address = f"http://{address}"
    check_reachable(address, default_port=8265, what="Ray dashboard (Jobs API)")
    return address


def client(address: str | None = None):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(jobs_address(address))


def project_root() -> Path | None:
    """The source checkout gfssm runs from (editable installs), if there is one."""
    root = Path(gfssm.__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() and (root / "gfssm_core").is_dir() else None


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def strip_requirements(wheel: Path, out_dir: Path) -> Path:
    """A copy of ``wheel`` without ``Requires-Dist`` (RECORD updated), in ``out_dir``."""
    target = out_dir / wheel.name
    with zipfile.ZipFile(wheel) as src:
        names = src.namelist()
        metadata_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        record_name = next(n for n in names if n.endswith(".dist-info/RECORD"))
        metadata = src.read(metadata_name).decode()
        kept = "\n".join(
            line for line in metadata.split("\n") if not line.startswith("Requires-Dist:")
        )
        new_metadata = kept.encode()
        record = []
        for line in src.read(record_name).decode().splitlines():
            if line.startswith(metadata_name + ","):
                line = _record_line(metadata_name, new_metadata)
            record.append(line)
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
            for name in names:
                if name == metadata_name:
                    dst.writestr(name, new_metadata)
                elif name == record_name:
                    dst.writestr(name, "\n".join(record) + "\n")
                else:
                    dst.writestr(src.getinfo(name), src.read(name))
    return target


def build_wheel(out_dir: Path, source: Path | None = None) -> Path:
    """Build this checkout's wheel (no build isolation: nothing is downloaded)."""
    source = source or project_root()
    if source is None:
        raise SubmitError(
            "gfssm is not installed from a source checkout, so there is no wheel to build; "
            "pass --wheel PATH (e.g. from `pip wheel --no-deps .`) or bake gfssm into the image"
        )
    with tempfile.TemporaryDirectory(prefix="gfssm-wheel-") as tmp:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "-q",
                "-w",
                tmp,
                str(source),
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise SubmitError(f"building the gfssm wheel from {source} failed:\n{done.stderr}")
        (wheel,) = Path(tmp).glob("gfssm-*.whl")
        return strip_requirements(wheel, out_dir)


def job_entrypoint(command: Sequence[str]) -> str:
    """``gfssm train dna ...`` -> ``python -m gfssm.pipelines train dna ...``: a ``--target``
    install puts no console script on the PATH."""
    args = list(command)
    if args and args[0] == "--":
        args = args[1:]
    if not args or args[0] != "gfssm":
        raise SubmitError(f"expected `gfssm submit -- gfssm COMMAND ...`, got {shlex.join(args)!r}")
    return shlex.join(["python", "-m", "gfssm.pipelines", *args[1:]])


def submit(
    command: Sequence[str],
    *,
    address: str | None = None,
    wheel: Path | None = None,
    env: dict[str, str] | None = None,
    tracking_uri: str | None = None,
    log=print,
) -> tuple[str, str]:
    """Submit; returns ``(submission_id, jobs address)``."""
    jobs = client(address)
    resolved = jobs_address(address)
    entrypoint = job_entrypoint(command)
    submission_id = f"gfssm-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    env_vars = {JOB_ID_ENV: submission_id, "RAY_TRAIN_ENABLE_PRINT_PATCH": "0", **(env or {})}
    uri = resolve_tracking_uri(tracking_uri)
    env_vars.setdefault(TRACKING_ENV, uri)
    if uri.startswith("sqlite:") and not any(h in resolved for h in ("127.0.0.1", "localhost")):
        log(
            f"note: the job will track to {uri} on the cluster's head node; use an MLflow "
            f"server (--tracking-uri http://...) to browse runs from here"
        )
    with tempfile.TemporaryDirectory(prefix="gfssm-submit-") as tmp:
        shipped = strip_requirements(wheel, Path(tmp)) if wheel else build_wheel(Path(tmp))
        _submit_when_ready(
            jobs,
            entrypoint=entrypoint,
            submission_id=submission_id,
            runtime_env={"py_modules": [str(shipped)], "env_vars": env_vars},
        )
    log(f"submitted {submission_id} to {resolved}: {entrypoint}")
    return submission_id, resolved


def _submit_when_ready(jobs, *, wait_s: float = 60.0, **job) -> None:
    """Submit; a head that has just started answers "No available agent" for a few seconds
    until its job agent is up, so that answer is retried (other errors are not)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            jobs.submit_job(**job)
            return
        except RuntimeError as err:
            if "No available agent" not in str(err) or time.monotonic() > deadline:
                raise SubmitError(f"the cluster refused the job: {err}") from None
            time.sleep(2)


def follow(submission_id: str, *, address: str | None = None, out=None) -> str:
    """Stream the job's logs until it ends; returns its final status."""
    jobs = client(address)
    out = out or sys.stdout

    async def tail() -> None:
        async for chunk in jobs.tail_job_logs(submission_id):
            out.write(chunk)
            out.flush()

    asyncio.run(tail())
    deadline = time.monotonic() + 60
    status = str(jobs.get_job_status(submission_id).value)
    while status not in TERMINAL and time.monotonic() < deadline:
        time.sleep(1)
        status = str(jobs.get_job_status(submission_id).value)
    return status


def list_jobs(address: str | None = None):
    return client(address).list_jobs()


def job_logs(submission_id: str, address: str | None = None) -> str:
    return client(address).get_job_logs(submission_id)


def stop_job(submission_id: str, address: str | None = None) -> bool:
    return client(address).stop_job(submission_id)
