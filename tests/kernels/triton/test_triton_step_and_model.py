"""The Triton decode step of the scan, a whole model running on the Triton kernels, and the
guard against kernels built for the other mode."""

from __future__ import annotations

import pytest
import torch

from gfssm import GFSSMConfig, GFSSMForCausalLM
from gfssm.kernels import KernelBackendError, ScanState, ssd_scan, ssd_step
from gfssm.kernels.ssd.step import ssd_step_reference
from gfssm.kernels.triton_support import load_triton_module

# The interpreter turns runtime loop bounds into Python ints through a NumPy conversion that
# NumPy 1.25+ deprecates (2.4 removes it; the project pins numpy<2.4).
pytestmark = pytest.mark.filterwarnings(
    "ignore:Conversion of an array with ndim > 0:DeprecationWarning"
)


def step_inputs(b, H, P, N, G, S, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0, to=torch.float32):
        return (torch.randn(*shape, generator=g) * scale).to(to).double()

    tokens = [
        dict(x=r(b, H, P, to=dtype), dt=r(b, H, scale=0.5, to=dtype),
             B=r(b, G, N, scale=0.5, to=dtype), C=r(b, G, N, scale=0.5, to=dtype))
        for _ in range(6)
    ]  # fmt: skip
    params = dict(A=-(torch.rand(H, generator=g) + 0.1).double(), D=r(H), dt_bias=r(H),
                  sink_k=r(S, G, N), sink_v=r(S, H, P), sink_gain=r(H))  # fmt: skip
    state = ScanState(r(b, H, P, N), r(b, H, P, N), torch.tensor([0, 2, 5][:b]))
    return tokens, params, state


def test_scan_step_matches_the_reference_token_by_token(target, matches):
    sizes = (3, 8, 64, 128, 2, 4) if target.on_gpu else (3, 4, 24, 5, 2, 3)
    tokens, params, state = step_inputs(*sizes, dtype=target.dtype)
    dev, dt = target.device, target.dtype
    par = {k: v.float().to(dev) for k, v in params.items()}
    st = ScanState(state.ssm.float().to(dev), state.init_sink.float().to(dev), state.seen.to(dev))
    st_ref = state
    for i, tok in enumerate(tokens):
        y, st = ssd_step(**{k: v.to(dev, dt) for k, v in tok.items()}, **par, state=st,
                         n_init=4, dt_limit=(0.01, 3.0))  # fmt: skip
        y_ref, st_ref = ssd_step_reference(**tok, **params, state=st_ref, n_init=4,
                                           dt_limit=(0.01, 3.0))  # fmt: skip
        matches(y, y_ref, dt, f"y[{i}]")
        matches(st.ssm, st_ref.ssm, dt, f"ssm[{i}]")
        matches(st.init_sink, st_ref.init_sink, dt, f"init_sink[{i}]")
        assert torch.equal(st.seen.cpu(), st_ref.seen)


def test_scan_step_gradients_come_from_the_reference(interpreter, matches):
    tokens, params, state = step_inputs(2, 4, 16, 16, 2, 3, torch.float32)
    tok = {k: v.float().requires_grad_(True) for k, v in tokens[0].items()}
    par = {k: v.float().requires_grad_(True) for k, v in params.items()}
    leaves = [*tok.values(), *par.values()]
    st = ScanState(state.ssm.float(), state.init_sink.float(), state.seen)
    y, new = ssd_step(**tok, **par, state=st, n_init=4)
    got = torch.autograd.grad((y * y).sum() + new.ssm.sum(), leaves)
    ref = [t.detach().double().requires_grad_(True) for t in leaves]
    names = [*tok, *par]
    y_r, new_r = ssd_step_reference(**dict(zip(names, ref)), state=state, n_init=4)
    want = torch.autograd.grad((y_r * y_r).sum() + new_r.ssm.sum(), ref)
    for name, a, r in zip(names, got, want):
        matches(a, r, torch.float32, name)


def tiny_model(seed=0) -> GFSSMForCausalLM:
    torch.manual_seed(seed)
    config = GFSSMConfig.preset(
        "gfssm", d_model=32, n_layer=1, vocab_size=11, d_state=16, headdim=16,
        chunk_size=16, fir_sizes=(4, 8), n_sink=2, n_init=3,
    )  # fmt: skip
    model = GFSSMForCausalLM(config)
    with torch.no_grad():  # sinks start at zero; make them matter
        for name, p in model.named_parameters():
            if "sink" in name:
                p.normal_(0.0, 0.3)
    return model


@pytest.mark.slow
def test_a_model_trains_and_streams_on_the_triton_kernels(interpreter, monkeypatch, matches):
    model = tiny_model()
    ids = torch.randint(0, 11, (2, 24), generator=torch.Generator().manual_seed(1))
    seq_idx = torch.tensor([[0] * 10 + [1] * 14, [0] * 24])

    def run(mode):
        monkeypatch.setenv("GFSSM_KERNELS", mode)
        model.zero_grad()
        logits = model(ids, seq_idx=seq_idx)
        logits.logsumexp(-1).sum().backward()
        return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    logits, grads = run("triton")
    logits_ref, grads_ref = run("reference")
    matches(logits, logits_ref, torch.float32, "logits")
    for name in grads_ref:
        matches(grads[name], grads_ref[name], torch.float32, name)

    monkeypatch.setenv("GFSSM_KERNELS", "triton")
    with torch.no_grad():
        cache = model.allocate_cache(2)
        prefix = model(ids[:, :19], cache=cache)
        steps = torch.stack([model.step(ids[:, t], cache) for t in range(19, 24)], dim=1)
        full = model(ids)
    matches(prefix, full[:, :19], torch.float32, "prefix with cache")
    matches(steps, full[:, 19:], torch.float32, "decode steps")


def test_kernels_built_for_the_interpreter_refuse_to_run_compiled(interpreter, monkeypatch):
    x = torch.randn(1, 5, 2, 16)
    ssd_scan(x, torch.rand(1, 5, 2), -torch.ones(2), torch.randn(1, 5, 1, 16),
             torch.randn(1, 5, 1, 16))  # fmt: skip
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(KernelBackendError, match="set TRITON_INTERPRET before"):
        load_triton_module("ssd.triton_ops")
