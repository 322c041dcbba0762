"""grouped_fir against a naive per-channel loop of spec section 2."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gfssm.kernels import fir_step, grouped_fir
from gfssm.kernels.testing import assert_close


def naive_fir(x, weight, bias, sizes, *, activation="silu", seq_idx=None, initial_inputs=None):
    """y[t, c] = act(bias[c] + sum_{k < K(c)} w[c, k] x[t - k, c]), taps never cross a change
    of seq_idx; inputs before position 0 come from initial_inputs (first sequence only)."""
    b, L, C = x.shape
    K = weight.shape[1]
    y = torch.zeros(b, L, C, dtype=torch.float64)
    for i in range(b):
        start = 0
        for t in range(L):
            if seq_idx is not None and t > 0 and seq_idx[i, t] != seq_idx[i, t - 1]:
                start = t
            for c in range(C):
                acc = float(bias[c]) if bias is not None else 0.0
                for k in range(int(sizes[c])):
                    s = t - k
                    if s >= start:
                        acc += float(weight[c, k]) * float(x[i, s, c])
                    elif start == 0 and initial_inputs is not None and s >= -(K - 1):
                        acc += float(weight[c, k]) * float(initial_inputs[i, K - 1 + s, c])
                y[i, t, c] = acc
    return F.silu(y) if activation == "silu" else y


def make(b=2, L=23, C=6, K=5, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, L, C, generator=g).to(dtype)
    w = torch.randn(C, K, generator=g).to(dtype)
    bias = torch.randn(C, generator=g).to(dtype)
    sizes = torch.tensor([1, 2, 5, 3, 5, 4][:C])
    return x, w, bias, sizes


@pytest.mark.parametrize("activation", ["silu", None])
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("with_history", [False, True])
def test_matches_naive(activation, packed, with_history):
    x, w, bias, sizes = make()
    seq_idx = torch.tensor([[0] * 7 + [1] * 2 + [2] * 14, [3] * 20 + [4] * 3]) if packed else None
    hist = torch.randn(2, 4, 6, dtype=torch.float64) if with_history else None
    y = grouped_fir(x, w, bias, sizes, activation=activation, seq_idx=seq_idx, initial_inputs=hist)
    ref = naive_fir(x, w, bias, sizes, activation=activation, seq_idx=seq_idx, initial_inputs=hist)
    assert_close(y, ref)


def test_taps_beyond_a_channels_length_get_zero_gradient():
    x, w, bias, sizes = make()
    w.requires_grad_(True)
    grouped_fir(x, w, bias, sizes, seq_idx=torch.zeros(2, 23, dtype=torch.long)).sum().backward()
    beyond = torch.arange(5)[None, :] >= sizes[:, None]
    assert (w.grad[beyond] == 0).all()
    assert (w.grad[~beyond] != 0).all()
    # Changing the unused taps changes nothing.
    w2 = w.detach().clone()
    w2[beyond] = 100.0
    assert torch.equal(grouped_fir(x, w2, bias, sizes), grouped_fir(x, w.detach(), bias, sizes))


def test_split_and_continue_and_step_equal_whole():
    x, w, bias, sizes = make(L=30)
    y_whole, final_whole = grouped_fir(x, w, bias, sizes, return_final_inputs=True)
    hist, ys = None, []
    for lo, hi in [(0, 1), (1, 3), (3, 17), (17, 30)]:
        y, hist = grouped_fir(
            x[:, lo:hi], w, bias, sizes, initial_inputs=hist, return_final_inputs=True
        )
        ys.append(y)
    assert_close(torch.cat(ys, 1), y_whole)
    assert_close(hist, final_whole)
    window = torch.zeros(2, 4, 6, dtype=torch.float64)
    for t in range(30):
        y_t, window = fir_step(x[:, t], window, w, bias, sizes)
        assert_close(y_t, y_whole[:, t])
    assert_close(window, final_whole)


def test_final_inputs_of_a_short_last_sequence_are_zero_before_it():
    x, w, bias, sizes = make(b=1, L=10)
    seq_idx = torch.tensor([[0] * 8 + [1] * 2])
    _, final = grouped_fir(x, w, bias, sizes, seq_idx=seq_idx, return_final_inputs=True)
    assert torch.equal(final[0, :2], torch.zeros(2, 6, dtype=torch.float64))
    assert torch.equal(final[0, 2:], x[0, 8:])


def test_gradcheck():
    x, w, bias, sizes = make(b=1, L=9, C=3, K=4)
    sizes = torch.tensor([1, 4, 2])
    args = tuple(t.clone().requires_grad_(True) for t in (x, w, bias))
    seq_idx = torch.tensor([[0] * 4 + [1] * 5])
    assert torch.autograd.gradcheck(
        lambda a, b, c: grouped_fir(a, b, c, sizes, seq_idx=seq_idx), args
    )


def test_bad_kernel_sizes_are_named():
    x, w, bias, _ = make()
    with pytest.raises(ValueError, match=r"kernel_sizes must lie in \[1, K_max=5\]"):
        grouped_fir(x, w, bias, torch.tensor([1, 2, 6, 3, 5, 4]))
    with pytest.raises(ValueError, match="weight must be"):
        grouped_fir(x, w[:3], bias, torch.tensor([1, 2, 3, 3, 5, 4]))


def autograd_fir(x, w, bias, sizes, history):
    """The same filter through autograd of conv1d (an independent gradient path)."""
    K = w.shape[1]
    wm = w * (torch.arange(K)[None, :] < sizes[:, None])
    xp = torch.cat([history, x], dim=1).transpose(1, 2)
    return F.silu(F.conv1d(xp, wm.flip(-1)[:, None], bias, groups=x.shape[-1]).transpose(1, 2))


@pytest.mark.parametrize("L", [1, 31, 32, 33, 100])
def test_gradients_match_autograd_of_conv1d(L):
    x, w, bias, sizes = make(b=2, L=L)
    hist = torch.randn(2, 4, 6, dtype=torch.float64)
    leaves = [t.clone().requires_grad_(True) for t in (x, w, bias, hist)]
    ours = grouped_fir(leaves[0], leaves[1], leaves[2], sizes, initial_inputs=leaves[3])
    g = torch.randn_like(ours)
    grads = torch.autograd.grad(ours, leaves, g)
    leaves2 = [t.clone().requires_grad_(True) for t in (x, w, bias, hist)]
    ref = autograd_fir(*leaves2[:3], sizes, leaves2[3])
    grads_ref = torch.autograd.grad(ref, leaves2, g)
    assert_close(ours, ref)
    for a, r in zip(grads, grads_ref):
        assert_close(a, r)


def test_single_tap_filter():
    x, w, bias, _ = make(C=2, K=1)
    sizes = torch.ones(2, dtype=torch.long)
    y, final = grouped_fir(x[..., :2], w[:2], bias[:2], sizes, return_final_inputs=True)
    assert_close(y, F.silu(x[..., :2] * w[:2, 0] + bias[:2]))
    assert final.shape == (2, 0, 2)
