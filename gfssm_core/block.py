"""Pre-norm residual blocks: a GFSSM mixer (causal or bidirectional) and an optional gated
MLP."""

from __future__ import annotations

import torch
from torch import nn

from gfssm.attention import SelfAttention
from gfssm.cache import LayerCache
from gfssm.config import GFSSMConfig
from gfssm.layers import GatedMLP, RMSNorm
from gfssm.mixer import GFSSMMixer
from gfssm.packing import gather_time


class BidirectionalMixer(nn.Module):
    """Runs one mixer on the sequence and another on its reverse, and adds (spec section 4).

    The reverse is taken inside each sequence's own extent (``reverse_index``), so padding
    and neighbouring packed sequences never reach real positions.
    """

    def __init__(self, config: GFSSMConfig) -> None:
        super().__init__()
        self.forward_mixer = GFSSMMixer(config)
        self.backward_mixer = GFSSMMixer(config)

    def forward(
        self, u: torch.Tensor, *, seq_idx: torch.Tensor | None, reverse_index: torch.Tensor
    ) -> torch.Tensor:
        """u: (b, L, D), seq_idx: (b, L), reverse_index: (b, L) -> (b, L, D)."""
        ahead = self.forward_mixer(u, seq_idx=seq_idx)
        # Reversal within sequences maps every sequence onto itself, so seq_idx is unchanged.
        behind = self.backward_mixer(gather_time(u, reverse_index), seq_idx=seq_idx)
        return ahead + gather_time(behind, reverse_index)


class GFSSMBlock(nn.Module):
    """``h + mixer(norm(h))``, then ``h + mlp(norm(h))`` when ``config.d_mlp > 0``."""

    def __init__(self, config: GFSSMConfig, *, bidirectional: bool = False) -> None:
        super().__init__()
        self.bidirectional = bidirectional
        self.norm = RMSNorm(config.d_model, config.norm_eps)
        self.attention = config.mixer == "attention"
        if self.attention:
            self.mixer: nn.Module = SelfAttention(config, causal=not bidirectional)
        elif bidirectional:
            self.mixer = BidirectionalMixer(config)
        else:
            self.mixer = GFSSMMixer(config)
        if config.d_mlp > 0:
            self.mlp_norm: RMSNorm | None = RMSNorm(config.d_model, config.norm_eps)
            self.mlp: GatedMLP | None = GatedMLP(config.d_model, config.d_mlp, config.proj_bias)
        else:
            self.mlp_norm, self.mlp = None, None

    def _mlp(self, h: torch.Tensor) -> torch.Tensor:
        if self.mlp is None or self.mlp_norm is None:
            return h
        return h + self.mlp(self.mlp_norm(h))

    def forward(
        self,
        h: torch.Tensor,
        *,
        seq_idx: torch.Tensor | None = None,
        cache: LayerCache | None = None,
        reverse_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """h: (b, L, D) -> (b, L, D)."""
        if self.attention:
            if cache is not None:
                raise ValueError("the attention baseline has no streaming cache")
            mixed = self.mixer(self.norm(h), seq_idx=seq_idx)
        elif self.bidirectional:
            assert reverse_index is not None
            mixed = self.mixer(self.norm(h), seq_idx=seq_idx, reverse_index=reverse_index)
        else:
            mixed = self.mixer(self.norm(h), seq_idx=seq_idx, cache=cache)
        return self._mlp(h + mixed)

    def step(self, h: torch.Tensor, cache: LayerCache) -> torch.Tensor:
        """One token per stream: h (b, D) -> (b, D)."""
        if self.bidirectional or self.attention:
            raise RuntimeError(
                "a bidirectional or attention block cannot stream one token at a time"
            )
        return self._mlp(h + self.mixer.step(self.norm(h), cache))

    def fork(self, h: torch.Tensor, cache: LayerCache) -> torch.Tensor:
        """``k`` continuations per stream, h (b, k, L, D) -> (b, k, L, D); ``cache`` is
        only read."""
        if self.bidirectional or self.attention:
            raise RuntimeError("a bidirectional or attention block has no streaming state")
        return self._mlp(h + self.mixer.fork(self.norm(h), cache))
