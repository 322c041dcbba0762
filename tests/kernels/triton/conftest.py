"""Fixtures of the Triton kernel tests: where the kernels run, and comparisons against the
PyTorch references.

Triton fixes compile-or-interpret when it decorates a kernel, its own helpers at
``import triton`` and gfssm's when its kernel modules are first imported; so one process
tests one kind. Without a GPU, ``tests/kernels/conftest.py`` sets ``TRITON_INTERPRET=1``
before any test of this folder imports triton, the interpreter cases run on CPU tensors and
the ``cuda`` cases are skipped; on a GPU the ``cuda`` cases run (larger shapes,
bfloat16 too) and the interpreter cases are skipped unless ``TRITON_INTERPRET=1`` is set for
the whole run. Kernel buffers are poisoned with NaN (``GFSSM_KERNELS_POISON=1``) and inputs
are strided views into NaN-padded storage, so any read of unwritten or foreign memory shows.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import pytest
import torch

from gfssm.kernels.testing import assert_close
from gfssm.kernels.triton_support import triton_language_interpreted


@dataclass(frozen=True)
class Target:
    """Where and in which dtype a test runs the Triton kernels."""

    device: torch.device
    dtype: torch.dtype

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"


TARGETS = [
    pytest.param(("interpreter", torch.float32), id="interp-fp32"),
    pytest.param(("interpreter", torch.float16), id="interp-fp16"),
    pytest.param(("cuda", torch.float32), id="cuda-fp32", marks=pytest.mark.cuda),
    pytest.param(("cuda", torch.float16), id="cuda-fp16", marks=pytest.mark.cuda),
    pytest.param(("cuda", torch.bfloat16), id="cuda-bf16", marks=pytest.mark.cuda),
]


def use_interpreter(monkeypatch) -> torch.device:
    if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip(
            "a GPU is present: the cuda cases test the compiled kernels "
            "(run with TRITON_INTERPRET=1 to test the interpreter path)"
        )
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    if "triton" in sys.modules and not triton_language_interpreted():
        pytest.skip(
            "triton was imported before TRITON_INTERPRET=1 was set in this process "
            "(tests/kernels/conftest.py sets it when no GPU is visible)"
        )
    monkeypatch.setenv("GFSSM_KERNELS", "triton")
    monkeypatch.setenv("GFSSM_KERNELS_POISON", "1")
    return torch.device("cpu")


def use_cuda(monkeypatch) -> torch.device:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("TRITON_INTERPRET=1 is set: this run interprets the kernels on CPU")
    monkeypatch.setenv("GFSSM_KERNELS", "triton")
    monkeypatch.setenv("GFSSM_KERNELS_POISON", "1")
    return torch.device("cuda")


@pytest.fixture(params=TARGETS)
def target(request, monkeypatch) -> Target:
    kind, dtype = request.param
    device = use_interpreter(monkeypatch) if kind == "interpreter" else use_cuda(monkeypatch)
    return Target(device, dtype)


@pytest.fixture
def interpreter(monkeypatch) -> Target:
    """Interpreter only, float32 (properties that need no dtype sweep)."""
    return Target(use_interpreter(monkeypatch), torch.float32)


def strided_views(
    tensors: list[torch.Tensor], device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Lay ``tensors`` (each (b, L, ...)) side by side in one NaN-padded (b, L, W) buffer, as
    the layer's input projection does, and return it with views of the same shapes."""
    b, L = tensors[0].shape[:2]
    widths = [t[0, 0].numel() for t in tensors]
    storage = torch.full((b, L, sum(widths) + 3 * len(tensors) + 1), float("nan"), dtype=dtype)
    views, start = [], 1
    for t, w in zip(tensors, widths):
        storage[:, :, start : start + w] = t.reshape(b, L, w).to(dtype)
        start += w + 3
    storage = storage.to(device).requires_grad_(True)
    start = 1
    for t, w in zip(tensors, widths):
        views.append(storage[:, :, start : start + w].view(t.shape))
        start += w + 3
    return storage, views


def assert_matches(actual: torch.Tensor | None, expected: torch.Tensor | None, dtype, name: str):
    """Compare on the scale of the expected values (gradients can be large): the dtype's
    tolerance applies to ``actual / scale`` against ``expected / scale``."""
    assert (actual is None) == (expected is None), f"{name}: one side has no value"
    if actual is None:
        return
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    expected = expected.detach().to(torch.float64)
    scale = max(1.0, float(expected.abs().max())) if expected.numel() else 1.0
    assert torch.isfinite(actual).all(), f"{name}: non-finite values (unwritten memory?)"
    assert_close(
        actual.detach().cpu().double() / scale, expected.cpu() / scale, dtype=dtype, msg=name
    )


@pytest.fixture
def matches():
    return assert_matches


@pytest.fixture
def views():
    return strided_views


def cotangents(shapes: dict[str, tuple[int, ...]], seed: int = 11) -> dict[str, torch.Tensor]:
    """Fixed random output gradients (float64), one per named output."""
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(*s, generator=g, dtype=torch.float64) for k, s in shapes.items()}


@pytest.fixture
def make_cotangents():
    return cotangents
