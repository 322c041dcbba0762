"""The CPU inference scan against the plain reference: every option, odd lengths, slowly
and quickly decaying heads (the two ways it forms the intra-chunk decay), streamed pieces,
and the dispatch that picks it."""

from __future__ import annotations

import pytest
import torch

from gfssm.kernels import ssd_scan
from gfssm.kernels.dispatch import ENV_VAR
from gfssm.kernels.ssd.cpu_inference import LOG_DECAY_LIMIT, ssd_scan_cpu_inference
from gfssm.kernels.ssd.reference import ssd_scan_reference
from gfssm.kernels.testing import assert_close

PER_POSITION = ("x", "dt", "B", "C")


def make_inputs(*, b=2, L=77, H=4, P=8, G=2, N=6, S=3, decay="mixed", dtype=torch.float64):
    """Random scan inputs; ``decay`` picks A so that heads decay by less than the
    factorisation limit per chunk ("slow"), by far more ("fast"), or both ("mixed")."""
    gen = torch.Generator().manual_seed(7)

    def rand(*shape):
        return torch.randn(*shape, generator=gen, dtype=dtype)

    slow = -torch.rand(H, generator=gen, dtype=dtype) * 0.5
    fast = -20.0 - 10.0 * torch.rand(H, generator=gen, dtype=dtype)
    A = {"slow": slow, "fast": fast, "mixed": torch.where(torch.arange(H) % 2 == 0, slow, fast)}
    return dict(
        x=rand(b, L, H, P),
        dt=rand(b, L, H),
        A=A[decay],
        B=rand(b, L, G, N),
        C=rand(b, L, G, N),
        D=rand(H),
        dt_bias=rand(H),
        sink_k=rand(S, G, N),
        sink_v=rand(S, H, P),
        sink_gain=rand(H),
    )


def test_fast_heads_really_pass_the_limit():
    """The "fast" inputs must exercise the exact per-head path, or the tests below would
    only ever check the factorised one."""
    inp = make_inputs(decay="fast")
    delta = torch.nn.functional.softplus(inp["dt"] + inp["dt_bias"])
    chunk_decay = (delta[:, :16] * inp["A"]).sum(dim=1)  # first chunk of 16
    assert bool((chunk_decay < -LOG_DECAY_LIMIT).all())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("decay", ["slow", "fast", "mixed"])
@pytest.mark.parametrize(
    ("G", "chunk_size", "n_init", "L"),
    [(1, 16, 4, 77), (2, 8, 3, 131), (1, 16, 4, 5), (2, 64, 3, 3)],
)
def test_matches_reference(dtype, decay, G, chunk_size, n_init, L):
    inp = make_inputs(G=G, L=L, decay=decay, dtype=dtype)
    kw = dict(chunk_size=chunk_size, n_init=n_init, return_final_state=True)
    with torch.inference_mode():
        y_ref, s_ref = ssd_scan_reference(**inp, **kw)
        y, s = ssd_scan_cpu_inference(**inp, **kw)
    assert_close(y, y_ref)
    assert_close(s.ssm, s_ref.ssm)
    assert_close(s.init_sink, s_ref.init_sink)
    assert torch.equal(s.seen, s_ref.seen)


@pytest.mark.parametrize("decay", ["slow", "mixed"])
def test_streamed_pieces_match_reference(decay):
    """Pieces cut inside the initial tokens and across chunks, each continuing from the
    state the previous piece left (as scoring streams a genome)."""
    inp = make_inputs(decay=decay)
    kw = dict(chunk_size=16, n_init=4, return_final_state=True)
    state_ref = state = None
    with torch.inference_mode():
        for lo, hi in [(0, 2), (2, 3), (3, 30), (30, 77)]:
            piece = {k: (v[:, lo:hi] if k in PER_POSITION else v) for k, v in inp.items()}
            y_ref, state_ref = ssd_scan_reference(**piece, **kw, initial_state=state_ref)
            y, state = ssd_scan_cpu_inference(**piece, **kw, initial_state=state)
            assert_close(y, y_ref)
    assert_close(state.ssm, state_ref.ssm)
    assert_close(state.init_sink, state_ref.init_sink)


def test_a_row_does_not_depend_on_its_batch():
    """Scores are promised independent of batching: a slowly decaying row gives the same
    bits alone and beside a row whose chunks take the exact fast-decay path."""
    inp = make_inputs(dtype=torch.float32)
    inp["A"] = -torch.ones(4, dtype=torch.float32)
    inp["dt"][0], inp["dt"][1] = -5.0, 5.0  # Delta ~ 0.007 and ~ 5 per position
    kw = dict(chunk_size=16, n_init=4)
    with torch.inference_mode():
        together = ssd_scan_cpu_inference(**inp, **kw)
        alone = {k: (v[:1] if k in PER_POSITION else v) for k, v in inp.items()}
        assert torch.equal(together[:1], ssd_scan_cpu_inference(**alone, **kw))
        assert_close(together, ssd_scan_reference(**inp, **kw))


def test_without_sinks_skip_or_bias():
    inp = make_inputs()
    for key in ("sink_k", "sink_v", "sink_gain", "D", "dt_bias"):
        del inp[key]
    with torch.inference_mode():
        assert_close(ssd_scan_cpu_inference(**inp), ssd_scan_reference(**inp))


def test_initial_tokens_without_gain_still_fill_the_state():
    """Without a gain the initial tokens are not read, but the sink state still holds them."""
    inp = make_inputs()
    del inp["sink_gain"]
    kw = dict(chunk_size=16, n_init=4, return_final_state=True)
    with torch.inference_mode():
        y_ref, s_ref = ssd_scan_reference(**inp, **kw)
        y, s = ssd_scan_cpu_inference(**inp, **kw)
    assert_close(y, y_ref)
    assert_close(s.init_sink, s_ref.init_sink)
    assert bool(s.init_sink.abs().sum() > 0)
    assert torch.equal(s.seen, s_ref.seen)


def test_float32_inputs_return_float32():
    inp = make_inputs(dtype=torch.float32)
    with torch.inference_mode():
        assert ssd_scan_cpu_inference(**inp).dtype == torch.float32


def test_dispatch_picks_it_without_grad_only(monkeypatch):
    """Without autograd on the CPU ``ssd_scan`` is this implementation, bit for bit; with
    gradients, with packed rows or under GFSSM_KERNELS=reference it is the reference."""
    monkeypatch.setenv(ENV_VAR, "auto")
    inp = make_inputs(dtype=torch.float32)
    with torch.no_grad():
        assert torch.equal(ssd_scan(**inp), ssd_scan_cpu_inference(**inp))
        seq_idx = torch.zeros(2, 77, dtype=torch.long)
        seq_idx[:, 40:] = 1
        assert torch.equal(
            ssd_scan(**inp, seq_idx=seq_idx), ssd_scan_reference(**inp, seq_idx=seq_idx)
        )
    assert torch.equal(ssd_scan(**inp).detach(), ssd_scan_reference(**inp))
    monkeypatch.setenv(ENV_VAR, "reference")
    with torch.no_grad():
        assert torch.equal(ssd_scan(**inp), ssd_scan_reference(**inp))


def test_packed_rows_are_refused():
    inp = make_inputs()
    with pytest.raises(ValueError, match="seq_idx"):
        ssd_scan_cpu_inference(**inp, seq_idx=torch.zeros(2, 77, dtype=torch.long))
