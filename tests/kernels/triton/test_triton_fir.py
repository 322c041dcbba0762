"""The Triton grouped FIR against the PyTorch reference (float64, same rounded inputs):
output, final inputs, and the gradients of x, weight (none beyond a channel's taps), bias
and the initial inputs; the decode step token by token."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest
import torch

from gfssm.kernels import fir_step, grouped_fir
from gfssm.kernels.fir.reference import fir_step_reference, grouped_fir_reference, tap_mask

F64 = torch.float64
# The interpreter turns runtime loop bounds into Python ints through a NumPy conversion that
# NumPy 1.25+ deprecates (2.4 removes it; the project pins numpy<2.4).
pytestmark = pytest.mark.filterwarnings(
    "ignore:Conversion of an array with ndim > 0:DeprecationWarning"
)


@dataclass(frozen=True)
class Case:
    b: int = 2
    L: int = 37
    C: int = 40  # two channel blocks in the interpreter
    K: int = 5
    packed: bool = True
    history: bool = True
    activation: str | None = "silu"
    final: bool = True


CASES = {
    "packed-with-history": Case(),
    "plain": Case(packed=False, history=False, final=False),
    "no-activation-long-filter": Case(K=12, activation=None, packed=False),
    "single-tap": Case(K=1, C=7, L=70),
}
GPU_SIZES = dict(b=3, L=2001, C=300, K=32)


def make_case(case: Case, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    b, L, C, K = case.b, case.L, case.C, case.K
    x = torch.randn(b, L, C, generator=g).to(dtype).to(F64)
    weight = (torch.randn(C, K, generator=g) / K**0.5).float().to(F64)
    bias = torch.randn(C, generator=g).float().to(F64)
    sizes = torch.randint(1, K + 1, (C,), generator=g)
    sizes[0] = K  # at least one channel uses every tap
    with_history = case.history and K > 1
    hist = torch.randn(b, K - 1, C, generator=g).to(dtype).to(F64) if with_history else None
    seq_idx = None
    if case.packed:
        seq_idx = torch.zeros(b, L, dtype=torch.long)
        seq_idx[0, 7:] = 1
        seq_idx[0, 9:] = 2  # a 2-token sequence
        seq_idx[-1, L - 3 :] = 5
    return x, weight, bias, sizes, hist, seq_idx


def run_fir(case, inputs, cot, *, device, dtype, views, reference):
    x, weight, bias, sizes, hist, seq_idx = inputs
    if reference:
        x_in = x.clone().requires_grad_(True)
        cast = dict(device="cpu", dtype=F64)
    else:
        _, (x_in,) = views([x], device, dtype)
        cast = dict(device=device, dtype=torch.float32)
    w_in = weight.to(**cast).requires_grad_(True)
    b_in = bias.to(**cast).requires_grad_(True)
    h_in = None
    if hist is not None:
        h_in = hist.to(cast["device"], F64 if reference else dtype).requires_grad_(True)
    fn = grouped_fir_reference if reference else grouped_fir
    out = fn(
        x_in, w_in, b_in, sizes.to(cast["device"]), activation=case.activation,
        seq_idx=None if seq_idx is None else seq_idx.to(cast["device"]),
        initial_inputs=h_in, return_final_inputs=case.final,
    )  # fmt: skip
    y, final = out if case.final else (out, None)
    loss = (y.double() * cot["y"].to(y.device)).sum()
    results = {"y": y}
    if final is not None:
        loss = loss + (final.double() * cot["final"].to(y.device)).sum()
        results["final"] = final
    inputs = {"x": x_in, "weight": w_in, "bias": b_in}
    if h_in is not None:
        inputs["history"] = h_in
    grads = torch.autograd.grad(loss, list(inputs.values()))
    results.update({f"d{k}": g for k, g in zip(inputs, grads)})
    return results


@pytest.mark.parametrize("name", list(CASES))
def test_fir_and_every_gradient_match_the_reference(name, target, views, matches,
                                                   make_cotangents):  # fmt: skip
    case = CASES[name]
    if target.on_gpu:
        case = dataclasses.replace(case, **{**GPU_SIZES, "K": GPU_SIZES["K"] if case.K > 1 else 1})
    inputs = make_case(case, target.dtype)
    b, L, C, K = case.b, case.L, case.C, case.K
    cot = make_cotangents(dict(y=(b, L, C), final=(b, K - 1, C)))
    kw = dict(device=target.device, dtype=target.dtype, views=views)
    got = run_fir(case, inputs, cot, reference=False, **kw)
    want = run_fir(case, inputs, cot, reference=True, **kw)
    assert got["y"].dtype == target.dtype
    for key in want:
        matches(got[key], want[key], target.dtype, f"{name}: {key}")
    beyond = ~tap_mask(inputs[3], K).to(target.device)
    assert (got["dweight"][beyond] == 0).all(), "taps beyond a channel's length got gradient"


def test_decode_step_matches_the_reference_token_by_token(target, matches):
    case = Case(b=3, L=9, C=20 if not target.on_gpu else 500, K=6, packed=False)
    x, weight, bias, sizes, hist, _ = make_case(case, target.dtype)
    dev, dt = target.device, target.dtype
    w, bi, ks = weight.float().to(dev), bias.float().to(dev), sizes.to(dev)
    window, window_ref = hist.to(dev, dt), hist
    for t in range(case.L):
        y, window = fir_step(x[:, t].to(dev, dt), window, w, bi, ks)
        y_ref, window_ref = fir_step_reference(x[:, t], window_ref, weight, bias, sizes)
        matches(y, y_ref, dt, f"y[{t}]")
        matches(window, window_ref, dt, f"window[{t}]")


def test_decode_step_gradients_come_from_the_reference(interpreter, matches):
    x, weight, bias, sizes, hist, _ = make_case(Case(b=2, C=20, K=6), torch.float32)
    leaves = [t[:, 0].float() if t is x else t.float() for t in (x, hist, weight, bias)]
    leaves = [t.clone().requires_grad_(True) for t in leaves]
    y, window = fir_step(leaves[0], leaves[1], leaves[2], leaves[3], sizes)
    got = torch.autograd.grad((y * y).sum() + window.sum(), leaves)
    ref_leaves = [t.detach().double().requires_grad_(True) for t in leaves]
    y_r, window_r = fir_step_reference(*ref_leaves[:2], ref_leaves[2], ref_leaves[3], sizes)
    want = torch.autograd.grad((y_r * y_r).sum() + window_r.sum(), ref_leaves)
    for name, a, r in zip(("x", "window", "weight", "bias"), got, want):
        matches(a, r, torch.float32, name)
