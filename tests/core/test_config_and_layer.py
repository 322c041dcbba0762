"""Config validation, the FIR channel-to-group rule, initialisation and parameter groups."""

from __future__ import annotations

import math

import pytest
import torch

from gfssm import ConfigError, GFSSMConfig, GFSSMForCausalLM, GFSSMMixer, fir_channel_sizes
from gfssm.optim import param_groups


def test_presets():
    g = GFSSMConfig.preset("gfssm")
    assert (g.fir_sizes, g.n_sink, g.n_init, g.A_floor) == ((4, 8, 16, 32), 4, 4, 1e-4)
    m = GFSSMConfig.preset("mamba2", d_model=64)
    assert (m.fir_sizes, m.n_sink, m.n_init, m.A_floor, m.d_model) == ((4,), 0, 0, 0.0, 64)
    with pytest.raises(ConfigError, match="unknown preset 'mamba3'"):
        GFSSMConfig.preset("mamba3")


@pytest.mark.parametrize(
    "kw, field",
    [
        (
            dict(d_model=100, headdim=64),
            "GFSSMConfig.headdim=64: d_inner = expand \\* d_model = 200",
        ),
        (dict(ngroups=3), "GFSSMConfig.ngroups=3"),
        (dict(chunk_size=48), "GFSSMConfig.chunk_size=48"),
        (dict(fir_sizes=()), "GFSSMConfig.fir_sizes"),
        (dict(A_floor=-1.0), "GFSSMConfig.A_floor"),
        (dict(dt_min=0.5, dt_max=0.1), "GFSSMConfig.dt_min"),
    ],
)
def test_validation_names_the_bad_field(kw, field):
    with pytest.raises(ConfigError, match=field):
        GFSSMConfig(**kw)


def test_unknown_field_lists_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown field.*'d_stat'.*valid fields"):
        GFSSMConfig.from_dict({"d_stat": 3})


def test_round_trip_through_dict():
    cfg = GFSSMConfig.preset("gfssm", d_model=64, vocab_size=9)
    assert GFSSMConfig.from_dict(cfg.to_dict()) == cfg


def test_fir_channel_to_group_rule():
    cfg = GFSSMConfig(d_model=32, expand=2, headdim=8, d_state=8, ngroups=2, fir_sizes=(2, 3, 5, 7))
    H, P, N, F = cfg.nheads, cfg.headdim, cfg.d_state, 4
    sizes = fir_channel_sizes(cfg)
    assert sizes.shape == (cfg.fir_channels,)
    for c in range(cfg.d_inner):  # x channel c is in head c // P
        assert sizes[c] == cfg.fir_sizes[(c // P) * F // H]
    for part in range(2):  # B then C, each ngroups * N channels, state index n = c % N
        for j in range(cfg.ngroups * N):
            c = cfg.d_inner + part * cfg.ngroups * N + j
            assert sizes[c] == cfg.fir_sizes[(j % N) * F // N]
    assert sorted(set(sizes.tolist())) == [2, 3, 5, 7]


def test_initialisation_follows_the_spec():
    torch.manual_seed(0)
    cfg = GFSSMConfig.preset("gfssm", d_model=256, headdim=16, d_state=64)
    mixer = GFSSMMixer(cfg)
    A = -mixer.A()
    assert ((A >= 1.0) & (A <= 16.0 + 1e-4)).all()
    dt = torch.nn.functional.softplus(mixer.dt_bias)
    assert ((dt >= 1e-3 * 0.999) & (dt <= 0.1 * 1.001)).all()
    assert (mixer.D == 1).all() and (mixer.sink_v == 0).all() and (mixer.sink_gain == 0).all()
    assert abs(mixer.sink_k.std().item() - 1 / math.sqrt(64)) < 0.02
    taps = torch.arange(cfg.fir_max)[None, :] < mixer.fir_kernel_sizes[:, None]
    bound = 1 / mixer.fir_kernel_sizes.float().sqrt()[:, None].expand_as(taps)
    assert (mixer.fir_weight[taps].abs() <= bound[taps]).all()


def test_param_groups_leave_out_decay_where_the_spec_says():
    model = GFSSMForCausalLM(
        GFSSMConfig.preset(
            "gfssm", d_model=32, headdim=8, d_state=8, vocab_size=5, d_mlp=16, n_layer=2
        )
    )
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    named = {id(p): n for n, p in model.named_parameters()}
    no_decay_names = {named[id(p)].split(".")[-1] for p in no_decay["params"]}
    assert {"A_log", "dt_bias", "D", "sink_gain", "weight", "fir_bias"} <= no_decay_names
    decay_names = {named[id(p)] for p in decay["params"]}
    assert any(n.endswith("in_proj.weight") for n in decay_names)
    assert not any("norm" in n for n in decay_names)
    # The tied embedding / head weight is counted once.
    total = sum(p.numel() for g in (decay, no_decay) for p in g["params"])
    assert total == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_norms_and_fir_give_the_same_result_with_and_without_gradients(dtype):
    """Inference takes in-place shortcuts (the RMS scaling, the gate's product, the FIR's
    silu); they must compute what the autograd path computes, and leave inputs untouched."""
    from gfssm.kernels.testing import assert_close
    from gfssm.layers import RMSNorm, RMSNormGated

    gen = torch.Generator().manual_seed(3)
    y, z = (torch.randn(2, 37, 64, generator=gen, dtype=dtype) for _ in range(2))
    for norm in (RMSNorm(64), RMSNormGated(64, 64), RMSNormGated(64, 16)):
        norm = norm.to(dtype)
        with torch.no_grad():
            norm.weight.uniform_(0.5, 1.5, generator=gen)
        args = (y,) if isinstance(norm, RMSNorm) else (y, z)
        before = [a.clone() for a in args]
        trained = norm(*(a.clone().requires_grad_() for a in args))
        with torch.inference_mode():
            inferred = norm(*args)
        assert_close(inferred, trained.detach())
        assert all(torch.equal(a, b) for a, b in zip(args, before))
    mixer = GFSSMMixer(GFSSMConfig(d_model=32, n_layer=1, d_state=16, headdim=16)).to(dtype)
    u = torch.randn(2, 45, 32, generator=gen, dtype=dtype)
    trained = mixer(u.clone().requires_grad_())
    with torch.inference_mode():
        inferred = mixer(u)
    assert_close(inferred, trained.detach())
