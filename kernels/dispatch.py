"""One place that decides which implementation of a kernel op runs.

``GFSSM_KERNELS`` selects the backend, read at call time:

- ``auto`` (default): Triton for CUDA tensors when the op has a Triton kernel, the
  plain-PyTorch reference otherwise.
- ``reference``: always the plain-PyTorch reference.
- ``triton``: always Triton; on CPU tensors this needs ``TRITON_INTERPRET=1`` (tests).

Asking for a backend that cannot run is an error that says why; nothing falls back silently.
The Triton kernels take float32, float16 and bfloat16 tensors; float64 stays on the reference
(an error under ``triton``, a warning under ``auto`` on a GPU). The kernel modules are
imported on first use (see :mod:`gfssm.kernels.triton_support`).
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from typing import Literal

import torch

Backend = Literal["triton", "reference"]
ENV_VAR = "GFSSM_KERNELS"
MODES = ("auto", "triton", "reference")


class KernelBackendError(RuntimeError):
    """The requested kernel backend cannot run here."""


def kernel_mode() -> str:
    """The value of ``GFSSM_KERNELS`` (``auto`` when unset), validated."""
    mode = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise KernelBackendError(
            f"{ENV_VAR}={mode!r} is not a kernel mode; expected one of {', '.join(MODES)}"
        )
    return mode


def triton_importable() -> bool:
    return importlib.util.find_spec("triton") is not None


def triton_interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def select_backend(op: str, device: torch.device, *, has_triton_kernel: bool) -> Backend:
    """Pick the implementation of ``op`` for tensors on ``device``.

    ``has_triton_kernel`` says whether a Triton implementation of ``op`` exists.
    """
    mode = kernel_mode()
    if mode == "reference":
        return "reference"
    if mode == "triton":
        if not has_triton_kernel:
            raise KernelBackendError(
                f"{ENV_VAR}=triton asks for the Triton kernel of {op}, but {op} has no Triton "
                f"implementation in this version; set {ENV_VAR}=reference or auto"
            )
        if not triton_importable():
            raise KernelBackendError(f"{ENV_VAR}=triton but the triton package is not installed")
        if device.type != "cuda" and not triton_interpreting():
            raise KernelBackendError(
                f"{ENV_VAR}=triton with tensors on {device.type}: Triton runs on CUDA devices, "
                "or on the CPU under TRITON_INTERPRET=1 (slow, for tests)"
            )
        return "triton"
    if device.type == "cuda" and triton_importable():
        if has_triton_kernel:
            return "triton"
        warnings.warn(
            f"{op}: no Triton kernel for these inputs, running the PyTorch reference on {device}",
            RuntimeWarning,
            stacklevel=3,
        )
    return "reference"
