"""The core models: streaming equivalence, causality, padding, and Mamba-2 as a special case."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gfssm import GFSSMConfig, GFSSMEncoder, GFSSMForCausalLM, GFSSMMixer
from gfssm.cache import GFSSMCache
from gfssm.kernels.testing import assert_close


def small_config(preset="gfssm", **kw) -> GFSSMConfig:
    base = dict(
        d_model=16,
        n_layer=2,
        vocab_size=11,
        d_state=8,
        headdim=4,
        expand=2,
        ngroups=2,
        chunk_size=8,
        d_mlp=24,
    )
    base.update(kw)
    return GFSSMConfig.preset(preset, **base)


def randomize_sinks(model: torch.nn.Module, seed=0) -> None:
    """The sinks start at zero (spec initialisation); make them matter in the tests."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, GFSSMMixer):
                if m.sink_v is not None:
                    m.sink_v.copy_(torch.randn(m.sink_v.shape, generator=g) * 0.3)
                if m.sink_gain is not None:
                    m.sink_gain.copy_(torch.randn(m.sink_gain.shape, generator=g))


def lm(dtype=torch.float64, seed=0, **kw) -> GFSSMForCausalLM:
    torch.manual_seed(seed)
    model = GFSSMForCausalLM(small_config(**kw)).to(dtype)
    randomize_sinks(model, seed)
    return model.eval()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("preset", ["gfssm", "mamba2"])
def test_whole_equals_pieces_equals_steps(dtype, preset):
    model = lm(dtype, preset=preset)
    ids = torch.randint(0, 11, (3, 45), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole_cache = model.allocate_cache(3)
        whole = model(ids, cache=whole_cache)
        assert_close(whole, model(ids))  # the cache-free path agrees too

        g = torch.Generator().manual_seed(2)
        cuts = sorted(set(torch.randint(1, 45, (6,), generator=g).tolist()))
        pieces_cache = model.allocate_cache(3)
        pieces = [
            model(ids[:, lo:hi], cache=pieces_cache) for lo, hi in zip([0, *cuts], [*cuts, 45])
        ]
        assert_close(torch.cat(pieces, dim=1), whole)

        step_cache = model.allocate_cache(3)
        steps = torch.stack([model.step(ids[:, t], step_cache) for t in range(45)], dim=1)
        assert_close(steps, whole)

    for a, b in ((pieces_cache, whole_cache), (step_cache, whole_cache)):
        assert torch.equal(a.seen, b.seen) and int(a.seen[0]) == 45
        for la, lb in zip(a.layers, b.layers):
            assert_close(la.fir_inputs, lb.fir_inputs)
            assert_close(la.scan.ssm, lb.scan.ssm, dtype=dtype)
            assert_close(la.scan.init_sink, lb.scan.init_sink, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("seen", [2, 37])  # inside the first n_init tokens, and well past
def test_fork_equals_running_a_copy_of_the_cache_per_branch(dtype, seen):
    model = lm(dtype)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        cache = model.allocate_cache(3)
        model(torch.randint(0, 11, (3, seen), generator=g), cache=cache)
        before = [t.clone() for layer in cache.layers for t in (layer.fir_inputs, *layer.scan)]
        branches = torch.randint(0, 11, (3, 4, 5), generator=g)  # 4 branches of 5 tokens
        forked = model.fork(branches, cache)
        after = [t for layer in cache.layers for t in (layer.fir_inputs, *layer.scan)]
        assert all(torch.equal(a, b) for a, b in zip(before, after))  # only read
        for k in range(4):
            copy = cache.select(torch.arange(3))
            assert_close(forked[:, k], model(branches[:, k], cache=copy))
    assert not torch.allclose(forked[:, 0], forked[:, 1])  # the branches differ
    # streams split one by one and joined again fork as they did together
    joined = GFSSMCache.cat([cache.select(torch.tensor([i])) for i in (2, 0, 1)])
    with torch.no_grad():
        assert_close(model.fork(branches[[2, 0, 1]], joined), forked[[2, 0, 1]])


def test_causal_lm_output_at_t_ignores_later_inputs():
    model = lm()
    ids = torch.randint(0, 11, (1, 40), generator=torch.Generator().manual_seed(3))
    t = 17
    changed = ids.clone()
    changed[:, t + 1 :] = (ids[:, t + 1 :] + 1) % 11
    with torch.no_grad():
        a, b = model(ids), model(changed)
    assert_close(a[:, : t + 1], b[:, : t + 1])
    assert (a[:, t + 1 :] - b[:, t + 1 :]).abs().max() > 1e-3


@pytest.mark.parametrize("bidirectional", [True, False])
def test_encoder_padded_batch_equals_each_sequence_alone(bidirectional):
    """Right padding takes the encoder's fast path (no seq_idx); packing takes the other."""
    torch.manual_seed(0)
    enc = GFSSMEncoder(small_config(vocab_size=0), bidirectional=bidirectional).double().eval()
    randomize_sinks(enc)
    lengths = [23, 9, 30]
    feats = [torch.randn(n, 16, dtype=torch.float64) for n in lengths]
    batch = torch.zeros(3, 30, 16, dtype=torch.float64)
    for i, f in enumerate(feats):
        batch[i, : len(f)] = f
        batch[i, len(f) :] = 1e3  # loud padding: any leak would show
    with torch.no_grad():
        out = enc(batch, lengths=torch.tensor(lengths))
        for i, f in enumerate(feats):
            alone = enc(f[None])
            assert_close(out[i, : len(f)], alone[0])
            assert (out[i, len(f) :] == 0).all()
        # The same rows packed into one row (seq_idx) give the same outputs.
        packed = enc(
            torch.cat(feats)[None],
            seq_idx=torch.cat([torch.full((n,), i) for i, n in enumerate(lengths)])[None],
        )
        assert_close(packed[0], torch.cat([out[i, :n] for i, n in enumerate(lengths)]))


def test_encoder_packed_equals_separate_and_is_bidirectional():
    torch.manual_seed(0)
    enc = GFSSMEncoder(small_config()).double().eval()
    randomize_sinks(enc)
    ids = torch.randint(0, 11, (1, 30), generator=torch.Generator().manual_seed(4))
    seq_idx = torch.tensor([[0] * 12 + [1] * 3 + [2] * 15])
    with torch.no_grad():
        packed = enc(ids, seq_idx=seq_idx)
        for lo, hi in ((0, 12), (12, 15), (15, 30)):
            assert_close(packed[:, lo:hi], enc(ids[:, lo:hi]))
        changed = ids.clone()
        changed[0, 29] = (ids[0, 29] + 1) % 11
        # The first position sees the last one through the backward direction.
        assert (enc(changed)[0, 0] - enc(ids)[0, 0]).abs().max() > 1e-6


def plain_mamba2_layer(mixer: GFSSMMixer, u: torch.Tensor) -> torch.Tensor:
    """Mamba-2's layer written out directly: conv1d (cross-correlation weights), a
    sequential selective scan, gated RMS norm per group."""
    cfg = mixer.config
    b, L, _ = u.shape
    H, P, G, N, di = cfg.nheads, cfg.headdim, cfg.ngroups, cfg.d_state, cfg.d_inner
    zxbcdt = F.linear(u, mixer.in_proj.weight, mixer.in_proj.bias)
    z, xbc, dt = zxbcdt.split([di, di + 2 * G * N, H], dim=-1)
    K = mixer.fir_weight.shape[1]
    conv_weight = mixer.fir_weight.flip(-1)[:, None, :]  # torch conv1d is cross-correlation
    xbc = F.silu(
        F.conv1d(
            F.pad(xbc.transpose(1, 2), (K - 1, 0)),
            conv_weight,
            mixer.fir_bias,
            groups=xbc.shape[-1],
        ).transpose(1, 2)
    )
    x, B, C = xbc.split([di, G * N, G * N], dim=-1)
    x = x.view(b, L, H, P)
    B = B.view(b, L, G, N).repeat_interleave(H // G, dim=2)
    C = C.view(b, L, G, N).repeat_interleave(H // G, dim=2)
    dt = F.softplus(dt + mixer.dt_bias)
    A = -torch.exp(mixer.A_log)
    h = torch.zeros(b, H, P, N, dtype=u.dtype)
    ys = []
    for t in range(L):
        h = torch.exp(dt[:, t] * A)[..., None, None] * h + (
            dt[:, t, :, None, None] * x[:, t, :, :, None] * B[:, t, :, None, :]
        )
        ys.append(torch.einsum("bhpn,bhn->bhp", h, C[:, t]) + mixer.D[:, None] * x[:, t])
    y = torch.stack(ys, dim=1).reshape(b, L, di) * F.silu(z)
    y = y.view(b, L, G, di // G)
    y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + cfg.norm_eps)
    y = y.reshape(b, L, di) * mixer.norm.weight
    return F.linear(y, mixer.out_proj.weight, mixer.out_proj.bias)


def test_mamba2_preset_is_exactly_mamba2():
    cfg = small_config("mamba2")
    assert cfg.fir_sizes == (4,) and cfg.n_sink == 0 and cfg.n_init == 0 and cfg.A_floor == 0
    torch.manual_seed(5)
    mixer = GFSSMMixer(cfg).double()
    u = torch.randn(2, 21, 16, dtype=torch.float64)
    with torch.no_grad():
        assert_close(mixer(u), plain_mamba2_layer(mixer, u))


def test_gfssm_mixer_differs_from_mamba2_once_sinks_are_trained():
    torch.manual_seed(5)
    mixer = GFSSMMixer(small_config("gfssm", A_floor=0.0)).double()
    u = torch.randn(1, 21, 16, dtype=torch.float64)
    with torch.no_grad():
        # Spec: at initialisation (sink_v = 0, gain = 0, A_floor = 0) it is Mamba-2 with
        # the same FIR output; plain_mamba2_layer uses the grouped FIR weights as conv1d.
        mixer.fir_weight.mul_(
            torch.arange(mixer.fir_weight.shape[1])[None, :] < mixer.fir_kernel_sizes[:, None]
        )
        assert_close(mixer(u), plain_mamba2_layer(mixer, u))
        randomize_sinks(mixer)
        assert (mixer(u) - plain_mamba2_layer(mixer, u)).abs().max() > 1e-3
