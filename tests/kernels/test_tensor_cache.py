"""Values cached per input tensor (FIR tap ranges, scan layouts, the decode step's sink
matrix) are reused while the tensor is unchanged and recomputed after it changes."""

from __future__ import annotations

import pytest
import torch

from gfssm.kernels import grouped_fir
from gfssm.kernels.triton_support import TensorCache


def test_a_cached_value_is_reused_until_its_tensor_changes():
    cache, calls = TensorCache(size=2), []
    t = torch.arange(4)

    def make():
        calls.append(1)
        return int(t.sum())

    assert cache.get((t,), ("x",), make) == 6
    assert cache.get((t,), ("x",), make) == 6
    assert len(calls) == 1
    assert cache.get((t,), ("y",), make) == 6  # other extra arguments: another entry
    assert len(calls) == 2
    t.add_(1)  # in place: a new version
    assert cache.get((t,), ("x",), make) == 10
    assert len(calls) == 3
    assert cache.get((torch.arange(4),), ("x",), make) == 10  # another tensor
    assert len(calls) == 4


def test_inference_tensors_are_not_cached():
    cache, calls = TensorCache(), []
    with torch.inference_mode():
        t = torch.ones(3)
    for _ in range(2):
        cache.get((t,), (), lambda: calls.append(1))
    assert len(calls) == 2


def test_the_fir_tap_range_is_checked_again_after_the_counts_change():
    x, w = torch.randn(1, 5, 3), torch.randn(3, 4)
    sizes = torch.tensor([4, 2, 1])
    grouped_fir(x, w, None, sizes)
    sizes[0] = 5  # more taps than the weight has
    with pytest.raises(ValueError, match="kernel_sizes must lie in"):
        grouped_fir(x, w, None, sizes)
