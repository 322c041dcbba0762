"""The causal Transformer baseline's mixer: multi-head self-attention with rotary positions.

It exists so that "toward Transformer-like performance" is measured, not assumed: the
``transformer`` preset swaps every GFSSM mixer for this layer and keeps the rest of the
block (pre-norm RMS norm, residual, optional gated MLP, tied embeddings), built from the
same config fields (``d_model``, ``headdim``, ``n_layer``, ``d_mlp``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gfssm.config import GFSSMConfig

ROPE_BASE = 10_000.0


def rotary_tables(length: int, dim: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin: (L, dim/2) for rotary embeddings of ``dim`` channels (RoFormer's angles)."""
    inv_freq = 1.0 / ROPE_BASE ** (
        torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim
    )
    angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * inv_freq[None]
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (b, nh, L, hd) rotated pairwise (first half with second half); cos, sin: (L, hd/2)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class SelfAttention(nn.Module):
    """Pre-normed input u (b, L, D) -> (b, L, D); ``D / headdim`` heads, causal by default.

    Positions restart at every packed sequence (``seq_idx``) and tokens never attend across
    sequences. There is no streaming cache: the baseline is for training and scoring whole
    windows.
    """

    def __init__(self, config: GFSSMConfig, *, causal: bool = True) -> None:
        super().__init__()
        if config.d_model % config.headdim or config.headdim % 2:
            raise ValueError(
                f"attention: d_model={config.d_model} must be a multiple of an even "
                f"headdim={config.headdim}"
            )
        self.causal = causal
        self.n_heads = config.d_model // config.headdim
        self.head_dim = config.headdim
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=config.proj_bias)
        self.out_proj = nn.Linear(config.d_model, config.d_model, bias=config.proj_bias)

    def forward(self, u: torch.Tensor, *, seq_idx: torch.Tensor | None = None) -> torch.Tensor:
        b, L, D = u.shape
        q, k, v = (
            self.qkv(u).view(b, L, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        )
        positions = None if seq_idx is None else _positions_within(seq_idx)
        cos, sin = rotary_tables(L, self.head_dim, u.device, q.dtype)
        if positions is not None:  # (b, L) -> per-row tables (b, 1, L, hd/2)
            cos, sin = cos[positions][:, None], sin[positions][:, None]
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if seq_idx is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        else:
            same = seq_idx[:, :, None] == seq_idx[:, None, :]
            if self.causal:
                same = same & torch.ones(L, L, dtype=torch.bool, device=u.device).tril()
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=same[:, None])
        return self.out_proj(out.transpose(1, 2).reshape(b, L, D))


def _positions_within(seq_idx: torch.Tensor) -> torch.Tensor:
    """(b, L) position of every token inside its own packed sequence."""
    b, L = seq_idx.shape
    index = torch.arange(L, device=seq_idx.device).expand(b, L)
    starts = torch.ones_like(seq_idx, dtype=torch.bool)
    starts[:, 1:] = seq_idx[:, 1:] != seq_idx[:, :-1]
    start_at = torch.where(starts, index, torch.zeros_like(index)).cummax(dim=1).values
    return index - start_at
