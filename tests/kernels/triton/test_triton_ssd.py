"""The Triton scan against the PyTorch reference (float64, from the same rounded inputs):
outputs, final states and the gradient of every input, over the options of spec section 3
(packing, initial state, learned sinks, initial-token sink, limits) and odd lengths."""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass

import pytest
import torch

from gfssm.kernels import ScanState, ssd_scan
from gfssm.kernels.ssd.reference import ssd_scan_reference

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
    H: int = 4
    P: int = 24
    N: int = 5
    G: int = 2
    n_sink: int = 3
    chunk: int = 16
    n_init: int = 4
    packed: bool = True
    seen: tuple[int, ...] | None = (0, 2)  # initial state with these counts, or none
    gain: bool = True
    D: bool = True
    bias: bool = True
    softplus: bool = True
    dt_limit: tuple[float, float] = (0.01, 2.0)
    final: bool = True


CASES = {
    "all-options": Case(),
    "odd-length-unpacked": Case(L=50, H=2, P=16, N=40, G=1, chunk=32, packed=False, seen=None),
    "mamba2": Case(n_sink=0, gain=False, n_init=0, packed=False, seen=None, dt_limit=(0, math.inf)),
    "sink-state-without-gain": Case(gain=False, n_init=3),
    "init-window-longer-than-chunk": Case(L=70, H=2, G=1, n_init=20, seen=(3, 30)),
    "no-softplus-bias-or-D": Case(softplus=False, bias=False, D=False, chunk=32, final=False),
    "length-one": Case(L=1, packed=False),
}
# On a GPU the same cases at sizes that exercise full tiles and many chunks.
GPU_SIZES = dict(b=2, L=1000, H=8, P=64, N=64, G=2, chunk=64)


def packed_seq_idx(b: int, L: int, seed: int = 1) -> torch.Tensor:
    """Rows cut into 1-4 sequences, the first row ending in a 2-token sequence."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(b):
        n_cuts = int(torch.randint(0, 4, (1,), generator=g))
        row = torch.zeros(L, dtype=torch.long)
        for cut in (torch.randperm(max(L - 1, 1), generator=g)[:n_cuts] + 1).tolist():
            row[cut:] += 1
        rows.append(row)
    if L > 2:
        rows[0][-2:] += 7
    return torch.stack(rows)


def make_case(case: Case, dtype: torch.dtype, seed: int = 0):
    """Float64 inputs; per-position tensors already rounded to ``dtype``, parameters and
    states to float32 (what the layer holds)."""
    g = torch.Generator().manual_seed(seed)
    b, L, H, P, N, G, S = case.b, case.L, case.H, case.P, case.N, case.G, case.n_sink

    def r(*shape, scale=1.0, to=torch.float32):
        return (torch.randn(*shape, generator=g) * scale).to(to).to(F64)

    dt = r(b, L, H, scale=0.5, to=dtype)
    seq = dict(x=r(b, L, H, P, to=dtype), dt=dt if case.softplus else dt.abs(),
               B=r(b, L, G, N, scale=0.7 / math.sqrt(N / 5), to=dtype),
               C=r(b, L, G, N, scale=0.7 / math.sqrt(N / 5), to=dtype))  # fmt: skip
    params = dict(A=-(torch.rand(H, generator=g) * 2 + 0.1).to(F64))
    if case.D:
        params["D"] = r(H)
    if case.bias:
        params["dt_bias"] = r(H, scale=0.3)
    if S:
        params["sink_k"], params["sink_v"] = r(S, G, N, scale=0.5), r(S, H, P, scale=0.5)
    if case.gain:
        params["sink_gain"] = r(H)
    state = None
    if case.seen is not None:
        state = dict(ssm=r(b, H, P, N), init_sink=r(b, H, P, N))
    return seq, params, state


def run_scan(case, seq, params, state, cot, *, device, dtype, views, reference):
    """y and final state of one implementation, and d(loss)/d(every input) for
    loss = <y, gy> + <S, gS> + <I, gI>."""
    order = ("x", "dt", "B", "C")
    if reference:
        seq_in = {k: seq[k].clone().requires_grad_(True) for k in order}
        cast = dict(device="cpu", dtype=F64)
    else:
        _, seq_views = views([seq[k] for k in order], device, dtype)
        seq_in = dict(zip(order, seq_views))
        cast = dict(device=device, dtype=torch.float32)
    par_in = {k: v.to(**cast).requires_grad_(True) for k, v in params.items()}
    st_in, init_state = {}, None
    if state is not None:
        st_in = {k: v.to(**cast).requires_grad_(True) for k, v in state.items()}
        seen = torch.tensor(case.seen, device=cast["device"])
        init_state = ScanState(st_in["ssm"], st_in["init_sink"], seen)
    seq_idx = packed_seq_idx(case.b, case.L) if case.packed else None
    fn = ssd_scan_reference if reference else ssd_scan
    out = fn(
        **seq_in, **par_in, dt_softplus=case.softplus, dt_limit=case.dt_limit,
        chunk_size=case.chunk, n_init=case.n_init, initial_state=init_state,
        seq_idx=None if seq_idx is None else seq_idx.to(cast["device"]),
        return_final_state=case.final,
    )  # fmt: skip
    y, final = out if case.final else (out, None)
    loss = (y.double() * cot["y"].to(y.device)).sum()
    results = {"y": y}
    if final is not None:
        loss = loss + (final.ssm.double() * cot["S"].to(y.device)).sum()
        loss = loss + (final.init_sink.double() * cot["I"].to(y.device)).sum()
        results.update(S=final.ssm, I=final.init_sink, seen=final.seen)
    inputs = {**seq_in, **par_in, **{f"state.{k}": v for k, v in st_in.items()}}
    grads = torch.autograd.grad(loss, list(inputs.values()), allow_unused=True)
    results.update({f"d{k}": g for k, g in zip(inputs, grads)})
    return results


def assert_matches_reference(case, label, target, views, matches, make_cotangents) -> None:
    """``case`` through ``ssd_scan`` on ``target`` and through the float64 reference: y, the
    final state and the gradient of every input agree to ``target.dtype``'s tolerance."""
    seq, params, state = make_case(case, target.dtype)
    b, L, H, P, N = case.b, case.L, case.H, case.P, case.N
    cot = make_cotangents(dict(y=(b, L, H, P), S=(b, H, P, N), I=(b, H, P, N)))
    kw = dict(device=target.device, dtype=target.dtype, views=views)
    got = run_scan(case, seq, params, state, cot, reference=False, **kw)
    want = run_scan(case, seq, params, state, cot, reference=True, **kw)
    assert got["y"].dtype == target.dtype
    if case.final:
        assert torch.equal(got.pop("seen").cpu(), want.pop("seen"))
    assert set(got) == set(want)
    for key in want:
        matches(got[key], want[key], target.dtype, f"{label}: {key}")


@pytest.mark.parametrize("name", list(CASES))
def test_scan_and_every_gradient_match_the_reference(name, target, views, matches,
                                                     make_cotangents):  # fmt: skip
    case = CASES[name]
    if target.on_gpu and case.L > 1:
        case = dataclasses.replace(case, **GPU_SIZES)
    assert_matches_reference(case, name, target, views, matches, make_cotangents)


def test_result_does_not_depend_on_the_chunk_length(interpreter, matches):
    case = Case(L=70, H=2, G=1, chunk=16)
    seq, params, _ = make_case(case, torch.float32)
    args = {k: v.float() for k, v in {**seq, **params}.items()}
    seq_idx = packed_seq_idx(case.b, case.L)
    ys = [ssd_scan(**args, n_init=4, seq_idx=seq_idx, chunk_size=q) for q in (1, 16, 32, 64, 256)]
    for y in ys[1:]:
        matches(y, ys[0], torch.float32, "chunk")


def test_a_packed_batch_equals_its_sequences_run_one_by_one(interpreter, matches):
    case = Case(b=1, L=50, packed=False, seen=None)
    seq, params, _ = make_case(case, torch.float32)
    args = {k: v.float() for k, v in params.items()}
    cuts = [0, 3, 20, 21, 50]
    seq_idx = torch.zeros(1, 50, dtype=torch.long)
    for i, c in enumerate(cuts[1:-1]):
        seq_idx[:, c:] = i + 1
    seq = {k: v.float() for k, v in seq.items()}
    y = ssd_scan(**seq, **args, n_init=4, chunk_size=16, seq_idx=seq_idx)
    for lo, hi in itertools.pairwise(cuts):
        piece = {k: v[:, lo:hi] for k, v in seq.items()}
        matches(
            y[:, lo:hi], ssd_scan(**piece, **args, n_init=4, chunk_size=16), torch.float32, "piece"
        )


# The chunk-parallel schedule (chunk states in parallel, a sequential pass over chunks,
# every chunk's output and gradients in parallel), forced: odd lengths of several chunks.
CHUNKED_CASES = {
    "all-options-77": Case(L=77),
    "init-window-across-chunks-131": Case(L=131, H=2, G=1, n_init=20, seen=(3, 30)),
    "mamba2-131": Case(
        L=131, n_sink=0, gain=False, n_init=0, packed=False, seen=None, dt_limit=(0, math.inf)
    ),
    "sink-state-without-gain-77": Case(L=77, gain=False, n_init=3, D=False, final=False),
    "length-one": Case(L=1, packed=False),
}


@pytest.mark.parametrize("name", list(CHUNKED_CASES))
def test_chunk_parallel_schedule_matches_the_reference(name, target, views, matches,
                                                       make_cotangents, monkeypatch):  # fmt: skip
    monkeypatch.setenv("GFSSM_SSD_SCHEDULE", "chunked")
    case = CHUNKED_CASES[name]
    if target.on_gpu:
        case = dataclasses.replace(case, **{**GPU_SIZES, "L": case.L * 13})
    assert_matches_reference(case, f"chunked {name}", target, views, matches, make_cotangents)


def test_the_schedule_rule_and_its_override(interpreter, monkeypatch):
    from gfssm.kernels.ssd.triton_chunked import SCHEDULE_ENV, schedule

    cpu = torch.device("cpu")  # counted as a 132-SM GPU
    monkeypatch.delenv(SCHEDULE_ENV, raising=False)
    assert schedule(8, 64, 16384, cpu) == "chunked"  # H=8, one 1M window: 16 programs
    assert schedule(8 * 32, 64, 128, cpu) == "fused"  # the benchmark shape fills the GPU
    assert schedule(8, 64, 4, cpu) == "fused"  # too few chunks to pay for three launches
    monkeypatch.setenv(SCHEDULE_ENV, "fused")
    assert schedule(8, 64, 16384, cpu) == "fused"
    monkeypatch.setenv(SCHEDULE_ENV, "chunked")
    assert schedule(256, 64, 4, cpu) == "chunked"
    monkeypatch.setenv(SCHEDULE_ENV, "sometimes")
    with pytest.raises(ValueError, match=SCHEDULE_ENV):
        schedule(8, 64, 16384, cpu)
