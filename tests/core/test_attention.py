"""The Transformer baseline (``transformer`` preset): causal, packing-safe, built from the
same config fields as GFSSM, and refusing what it cannot do (streaming)."""

from __future__ import annotations

import pytest
import torch

from gfssm import ConfigError, GFSSMConfig, GFSSMEncoder, GFSSMForCausalLM, SelfAttention
from gfssm.attention import apply_rotary, rotary_tables

# fp32 on CPU: reordering sums inside attention moves results by a few ulps of O(1) values.
ATOL = {torch.float32: 1e-5, torch.float64: 1e-12}


def tiny(**fields) -> GFSSMConfig:
    values = dict(d_model=32, n_layer=2, headdim=8, d_state=16, vocab_size=40, d_mlp=48)
    return GFSSMConfig.preset("transformer", **{**values, **fields})


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_future_tokens_never_change_past_outputs(dtype):
    torch.manual_seed(0)
    model = GFSSMForCausalLM(tiny()).to(dtype).eval()
    x = torch.randint(0, 40, (3, 37))
    for cut in (1, 18, 36):
        changed = x.clone()
        changed[:, cut:] = torch.randint(0, 40, changed[:, cut:].shape)
        a, b = model(x), model(changed)
        assert torch.allclose(a[:, :cut], b[:, :cut], atol=ATOL[dtype], rtol=0)
        assert not torch.allclose(a[:, cut:], b[:, cut:], atol=1e-3)


def test_packed_sequences_equal_separate_runs_and_positions_restart():
    torch.manual_seed(1)
    model = GFSSMForCausalLM(tiny()).eval()
    a, b = torch.randint(0, 40, (1, 11)), torch.randint(0, 40, (1, 20))
    packed = torch.cat([a, b], dim=1)
    seq_idx = torch.tensor([[0] * 11 + [1] * 20])
    out = model(packed, seq_idx=seq_idx)
    assert torch.allclose(out[:, :11], model(a), atol=ATOL[torch.float32])
    assert torch.allclose(out[:, 11:], model(b), atol=ATOL[torch.float32])


def test_rotary_keeps_norms_and_makes_scores_depend_on_offsets_only():
    cos, sin = rotary_tables(16, 8, "cpu", torch.float64)
    q, k = (
        torch.randn(1, 1, 1, 8, dtype=torch.float64),
        torch.randn(1, 1, 1, 8, dtype=torch.float64),
    )
    rq = apply_rotary(q.expand(1, 1, 16, 8), cos, sin)
    rk = apply_rotary(k.expand(1, 1, 16, 8), cos, sin)
    assert torch.allclose(rq.norm(dim=-1), q.norm(dim=-1).expand(1, 1, 16))
    scores = rq[0, 0] @ rk[0, 0].T  # (16, 16): entry (i, j) depends on i - j only
    assert torch.allclose(scores.diagonal(3)[:-1], scores.diagonal(3)[1:], atol=1e-12)


def test_same_fields_same_residual_structure_and_parameter_count():
    config = tiny()
    model = GFSSMForCausalLM(config)
    attention = [m for m in model.modules() if isinstance(m, SelfAttention)]
    assert len(attention) == config.n_layer and attention[0].n_heads == 32 // 8
    d, n, v = config.d_model, config.n_layer, config.padded_vocab_size
    per_layer = 4 * d * d + 3 * d * config.d_mlp + 2 * d  # qkv+out, gated MLP, two norms
    assert sum(p.numel() for p in model.parameters()) == v * d + n * per_layer + d


def test_bidirectional_encoder_sees_both_sides():
    torch.manual_seed(2)
    encoder = GFSSMEncoder(tiny(vocab_size=0), bidirectional=True).eval()
    x = torch.randn(1, 12, 32)
    changed = x.clone()
    changed[:, 10:] += 1.0
    assert not torch.allclose(encoder(x)[:, :5], encoder(changed)[:, :5], atol=1e-4)


def test_no_streaming_and_bad_head_sizes_are_clear_errors():
    model = GFSSMForCausalLM(tiny())
    with pytest.raises(ValueError, match="no streaming cache"):
        model.allocate_cache(1)
    with pytest.raises(ConfigError, match="headdim"):
        GFSSMConfig.preset("transformer", d_model=30, headdim=8, vocab_size=8)
    with pytest.raises(ConfigError, match="mixer"):
        GFSSMConfig(mixer="lstm")
