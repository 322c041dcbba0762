"""The dispatch reads GFSSM_KERNELS at call time and never falls back silently."""

from __future__ import annotations

import pytest
import torch

from gfssm.kernels import KernelBackendError, kernel_mode, select_backend, ssd_scan


def test_default_is_auto_and_cpu_gets_the_reference(monkeypatch):
    monkeypatch.delenv("GFSSM_KERNELS", raising=False)
    assert kernel_mode() == "auto"
    assert select_backend("ssd_scan", torch.device("cpu"), has_triton_kernel=True) == "reference"


def test_reference_mode_always_gives_the_reference(monkeypatch):
    monkeypatch.setenv("GFSSM_KERNELS", "reference")
    assert select_backend("op", torch.device("cuda"), has_triton_kernel=True) == "reference"


def test_unknown_mode_is_an_error_listing_the_modes(monkeypatch):
    monkeypatch.setenv("GFSSM_KERNELS", "fast")
    with pytest.raises(KernelBackendError, match="auto, triton, reference"):
        kernel_mode()


def test_triton_without_a_kernel_says_so(monkeypatch):
    monkeypatch.setenv("GFSSM_KERNELS", "triton")
    with pytest.raises(KernelBackendError, match="no Triton implementation"):
        select_backend("some_op", torch.device("cpu"), has_triton_kernel=False)


def test_triton_on_cpu_needs_the_interpreter(monkeypatch):
    monkeypatch.setenv("GFSSM_KERNELS", "triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(KernelBackendError, match="TRITON_INTERPRET=1"):
        select_backend("some_op", torch.device("cpu"), has_triton_kernel=True)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert select_backend("some_op", torch.device("cpu"), has_triton_kernel=True) == "triton"


def test_env_is_read_per_call(monkeypatch):
    x = torch.randn(1, 4, 2, 2)
    args = (
        x,
        torch.rand(1, 4, 2),
        -torch.ones(2),
        torch.randn(1, 4, 1, 2),
        torch.randn(1, 4, 1, 2),
    )
    monkeypatch.setenv("GFSSM_KERNELS", "bogus")
    with pytest.raises(KernelBackendError):
        ssd_scan(*args)
    monkeypatch.setenv("GFSSM_KERNELS", "reference")
    assert ssd_scan(*args).shape == x.shape


def test_auto_sends_cuda_tensors_to_triton(monkeypatch):
    monkeypatch.delenv("GFSSM_KERNELS", raising=False)
    assert select_backend("op", torch.device("cuda"), has_triton_kernel=True) == "triton"


def test_float64_has_no_triton_kernel(monkeypatch):
    monkeypatch.setenv("GFSSM_KERNELS", "triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    x = torch.randn(1, 4, 2, 2, dtype=torch.float64)
    B = torch.randn(1, 4, 1, 2, dtype=torch.float64)
    with pytest.raises(KernelBackendError, match=r"ssd_scan \(torch.float64\).*no Triton"):
        ssd_scan(x, torch.rand(1, 4, 2, dtype=torch.float64), -torch.ones(2), B, B)
    with pytest.warns(RuntimeWarning, match="running the PyTorch reference"):
        monkeypatch.setenv("GFSSM_KERNELS", "auto")
        assert select_backend("op", torch.device("cuda"), has_triton_kernel=False) == "reference"
