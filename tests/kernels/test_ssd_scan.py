"""ssd_scan against a naive time loop of the spec's recurrence (section 3), and the
properties of section 5: chunk-size independence, packing, streaming, gradients, long L."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from gfssm.kernels import ScanState, ssd_scan, ssd_step
from gfssm.kernels.testing import assert_close


def naive_scan(
    x,
    dt,
    A,
    B,
    C,
    D=None,
    *,
    dt_bias=None,
    dt_softplus=True,
    dt_limit=(0.0, math.inf),
    sink_k=None,
    sink_v=None,
    sink_gain=None,
    n_init=0,
    seq_idx=None,
    initial_state=None,
):
    """The recurrence of spec section 3, one position at a time, in float64."""
    f64 = torch.float64
    x, dt, A, B, C = (t.to(f64) for t in (x, dt, A, B, C))
    b, L, H, P = x.shape
    G, N = B.shape[-2:]
    head_group = torch.arange(H) // (H // G)
    K = torch.zeros(H, P, N, dtype=f64)
    if sink_k is not None:
        K = torch.einsum("shp,shn->hpn", sink_v.to(f64), sink_k.to(f64)[:, head_group])
    gain = sink_gain.to(f64) if sink_gain is not None else torch.zeros(H, dtype=f64)
    y = torch.zeros(b, L, H, P, dtype=f64)
    finals = []
    for i in range(b):
        if initial_state is not None:
            S = initial_state.ssm[i].to(f64).clone()
            I = initial_state.init_sink[i].to(f64).clone()
            t_seq = int(initial_state.seen[i])
        else:
            S = torch.zeros(H, P, N, dtype=f64)
            I = torch.zeros(H, P, N, dtype=f64)
            t_seq = 0
        for t in range(L):
            if seq_idx is not None and t > 0 and seq_idx[i, t] != seq_idx[i, t - 1]:
                S, I, t_seq = torch.zeros_like(S), torch.zeros_like(I), 0
            d = dt[i, t] + (dt_bias.to(f64) if dt_bias is not None else 0.0)
            if dt_softplus:
                d = F.softplus(d)
            d = d.clamp(dt_limit[0], dt_limit[1])  # (H,)
            a = torch.exp(d * A)
            Bt, Ct = B[i, t, head_group], C[i, t, head_group]  # (H, N)
            u = d[:, None, None] * x[i, t][:, :, None] * Bt[:, None, :]
            S = a[:, None, None] * S + u
            if t_seq < n_init:
                I = I + u
            read = S + K + gain[:, None, None] * I
            y[i, t] = torch.einsum("hpn,hn->hp", read, Ct)
            if D is not None:
                y[i, t] += D.to(f64)[:, None] * x[i, t]
            t_seq += 1
        finals.append((S, I, t_seq))
    state = ScanState(
        ssm=torch.stack([f[0] for f in finals]),
        init_sink=torch.stack([f[1] for f in finals]),
        seen=torch.tensor([f[2] for f in finals]),
    )
    return y, state


def make_inputs(b=2, L=37, H=4, P=3, N=5, G=2, S=3, dtype=torch.float64, seed=0, decay=1.0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(dtype)

    return dict(
        x=r(b, L, H, P),
        dt=r(b, L, H, scale=0.5),
        A=-(torch.rand(H, generator=g) * 2 * decay + 0.1 * decay).to(dtype),
        B=r(b, L, G, N, scale=0.7),
        C=r(b, L, G, N, scale=0.7),
        D=r(H),
        dt_bias=r(H, scale=0.3),
        sink_k=r(S, G, N, scale=0.5),
        sink_v=r(S, H, P, scale=0.5),
        sink_gain=r(H),
    )


def packed_seq_idx(b, L, seed=1):
    """Rows cut into 1-4 sequences of random lengths (some shorter than n_init)."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(b):
        cuts = sorted(
            torch.randperm(L - 1, generator=g)[: int(torch.randint(0, 4, (1,), generator=g))] + 1
        )
        row = torch.zeros(L, dtype=torch.long)
        for c in cuts:
            row[c:] += 1
        rows.append(row)
    rows[0][-2:] += 7  # a 2-token sequence at the end, shorter than n_init
    return torch.stack(rows)


def random_state(b, H, P, N, dtype=torch.float64, seed=3, seen=(0, 2)):
    g = torch.Generator().manual_seed(seed)
    return ScanState(
        ssm=torch.randn(b, H, P, N, generator=g).to(dtype),
        init_sink=torch.randn(b, H, P, N, generator=g).to(dtype),
        seen=torch.tensor(seen[:b], dtype=torch.long),
    )


def assert_state_close(a: ScanState, b: ScanState, dtype):
    assert_close(a.ssm, b.ssm, dtype=dtype)
    assert_close(a.init_sink, b.init_sink, dtype=dtype)
    assert torch.equal(a.seen.cpu(), b.seen.cpu())


@pytest.mark.parametrize("chunk_size", [1, 2, 8, 64])
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("with_state", [False, True])
def test_matches_naive_recurrence_with_every_option(chunk_size, packed, with_state):
    inp = make_inputs()
    b, L, H, P = inp["x"].shape
    N = inp["B"].shape[-1]
    extra = dict(
        dt_limit=(0.01, 2.0),
        n_init=4,
        seq_idx=packed_seq_idx(b, L) if packed else None,
        initial_state=random_state(b, H, P, N) if with_state else None,
    )
    y, state = ssd_scan(**inp, **extra, chunk_size=chunk_size, return_final_state=True)
    y_ref, state_ref = naive_scan(**inp, **extra)
    assert_close(y, y_ref)
    assert_state_close(state, state_ref, torch.float64)


@pytest.mark.parametrize("dt_softplus", [True, False])
def test_options_off_and_no_softplus(dt_softplus):
    inp = make_inputs(G=1, S=1)
    if not dt_softplus:
        inp["dt"] = inp["dt"].abs()
    for key in ("D", "dt_bias", "sink_k", "sink_v", "sink_gain"):
        inp.pop(key)
    y = ssd_scan(**inp, dt_softplus=dt_softplus, chunk_size=8)
    y_ref, _ = naive_scan(**inp, dt_softplus=dt_softplus)
    assert_close(y, y_ref)


def test_init_tokens_without_gain_still_accumulate_in_state():
    inp = make_inputs(L=9)
    inp.pop("sink_gain")
    _, state = ssd_scan(**inp, n_init=3, chunk_size=4, return_final_state=True)
    _, state_ref = naive_scan(**inp, n_init=3)
    assert state.init_sink.abs().max() > 0
    assert_state_close(state, state_ref, torch.float64)


def test_chunk_size_does_not_change_result_fp32():
    inp = make_inputs(L=203, dtype=torch.float32)
    kw = dict(n_init=4, seq_idx=packed_seq_idx(2, 203))
    ys = [ssd_scan(**inp, **kw, chunk_size=q) for q in (1, 2, 8, 64, 256)]
    for y in ys[1:]:
        assert_close(y, ys[0])


def test_packed_equals_separate():
    inp = make_inputs(b=1, L=50)
    cuts = [0, 3, 20, 21, 50]
    seq_idx = torch.zeros(1, 50, dtype=torch.long)
    for i, c in enumerate(cuts[1:-1]):
        seq_idx[:, c:] = i + 1
    kw = dict(n_init=4, chunk_size=8)
    per_pos = ("x", "dt", "B", "C")
    y_packed = ssd_scan(**inp, **kw, seq_idx=seq_idx)
    for lo, hi in itertools.pairwise(cuts):
        piece = {k: (v[:, lo:hi] if k in per_pos else v) for k, v in inp.items()}
        assert_close(y_packed[:, lo:hi], ssd_scan(**piece, **kw))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_split_and_continue_equals_whole(dtype):
    inp = make_inputs(L=71, dtype=dtype)
    kw = dict(n_init=4, chunk_size=8)
    y_whole, s_whole = ssd_scan(**inp, **kw, return_final_state=True)
    per_pos = ("x", "dt", "B", "C")
    state, ys = None, []
    for lo, hi in [(0, 2), (2, 3), (3, 30), (30, 64), (64, 71)]:
        piece = {k: (v[:, lo:hi] if k in per_pos else v) for k, v in inp.items()}
        y, state = ssd_scan(**piece, **kw, initial_state=state, return_final_state=True)
        ys.append(y)
    assert_close(torch.cat(ys, dim=1), y_whole)
    assert_state_close(state, s_whole, dtype)


def test_step_equals_scan_token_by_token():
    inp = make_inputs(L=11)
    b, L, H, P = inp["x"].shape
    N = inp["B"].shape[-1]
    y_whole, s_whole = ssd_scan(**inp, n_init=4, return_final_state=True)
    state = ScanState.zeros(b, H, P, N, dtype=torch.float64)
    per_pos = ("x", "dt", "B", "C")
    for t in range(L):
        tok = {k: (v[:, t] if k in per_pos else v) for k, v in inp.items()}
        y, state = ssd_step(**tok, n_init=4, state=state)
        assert_close(y, y_whole[:, t])
    assert_state_close(state, s_whole, torch.float64)


def test_gradcheck_all_inputs():
    inp = make_inputs(b=1, L=7, H=2, P=2, N=3, G=1, S=2)
    state = random_state(1, 2, 2, 3, seen=(1,))
    names = list(inp)

    def fn(*tensors):
        kw = dict(zip(names, tensors))
        y, st = ssd_scan(
            **kw,
            n_init=3,
            chunk_size=4,
            initial_state=state,
            dt_limit=(0.0, 5.0),
            seq_idx=torch.tensor([[0, 0, 0, 0, 0, 1, 1]]),
            return_final_state=True,
        )
        return y, st.ssm, st.init_sink

    args = tuple(v.clone().requires_grad_(True) for v in inp.values())
    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-6)


def test_gradcheck_initial_state():
    inp = make_inputs(b=1, L=5, H=2, P=2, N=2, G=1, S=1)
    ssm = torch.randn(1, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    sink = torch.randn(1, 2, 2, 2, dtype=torch.float64, requires_grad=True)

    def fn(ssm, sink):
        st = ScanState(ssm, sink, torch.tensor([2]))
        return ssd_scan(**inp, n_init=4, chunk_size=2, initial_state=st)

    assert torch.autograd.gradcheck(fn, (ssm, sink))


def test_long_sequence_fp32_stays_finite_and_matches_fp64():
    L = 65536
    inp64 = make_inputs(b=1, L=L, H=2, P=4, N=4, G=1, S=2, decay=1e-4, seed=5)
    inp32 = {k: v.float() for k, v in inp64.items()}
    kw = dict(n_init=4, chunk_size=64, return_final_state=True)
    y32, s32 = ssd_scan(**inp32, **kw)
    y64, s64 = ssd_scan(**inp64, **kw)
    assert torch.isfinite(y32).all() and torch.isfinite(s32.ssm).all()
    # Weak decay: the state integrates ~L inputs; compare relative to its scale.
    scale = y64.abs().max()
    assert scale > 10  # the weak decay really accumulated
    assert_close(y32 / scale, y64 / scale, dtype=torch.float32)
    assert_close(s32.ssm / s64.ssm.abs().max(), s64.ssm / s64.ssm.abs().max(), dtype=torch.float32)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(dt=torch.zeros(2, 37, 3)), "dt must have shape"),
        (dict(A=torch.zeros(5)), "A must have shape"),
        (dict(sink_v=None), "sink_k and sink_v"),
    ],
)
def test_bad_arguments_name_the_argument(change, message):
    inp = make_inputs()
    inp.update(change)
    with pytest.raises(ValueError, match=message):
        ssd_scan(**inp)


def test_bad_chunk_size():
    with pytest.raises(ValueError, match="power of two"):
        ssd_scan(**make_inputs(), chunk_size=48)
