"""GFSSM stacks: the backbone, the causal LM and the (bidirectional) encoder."""

from __future__ import annotations

import math

import torch
from torch import nn

from gfssm.attention import SelfAttention
from gfssm.block import GFSSMBlock
from gfssm.cache import GFSSMCache
from gfssm.config import ConfigError, GFSSMConfig
from gfssm.layers import GatedMLP, RMSNorm
from gfssm.mixer import GFSSMMixer
from gfssm.packing import lengths_to_seq_idx, mask_padding, reverse_within_sequences


def init_weights(model: nn.Module, config: GFSSMConfig) -> None:
    """Mamba's scheme: embeddings ~ N(0, initializer_range), zero linear biases, and output
    projections into the residual stream scaled by 1/sqrt(residual branches)."""
    branches = config.n_layer * (2 if config.d_mlp > 0 else 1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Embedding):
                module.weight.normal_(0.0, config.initializer_range)
            elif isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.zero_()
            if isinstance(module, GFSSMMixer | SelfAttention):
                module.out_proj.weight.div_(math.sqrt(branches))
            elif isinstance(module, GatedMLP):
                module.fc_out.weight.div_(math.sqrt(branches))


class GFSSMBackbone(nn.Module):
    """A stack of blocks and a final norm: hidden (b, L, D) -> (b, L, D)."""

    def __init__(self, config: GFSSMConfig, *, bidirectional: bool = False) -> None:
        super().__init__()
        self.config = config
        self.bidirectional = bidirectional
        self.layers = nn.ModuleList(
            GFSSMBlock(config, bidirectional=bidirectional) for _ in range(config.n_layer)
        )
        self.norm_f = RMSNorm(config.d_model, config.norm_eps)

    def forward(
        self,
        hidden: torch.Tensor,
        *,
        seq_idx: torch.Tensor | None = None,
        cache: GFSSMCache | None = None,
    ) -> torch.Tensor:
        """hidden: (b, L, D), seq_idx: (b, L) ints. With ``cache`` (causal stacks only) the
        stack continues from it and leaves the final state in it."""
        b, L, _ = hidden.shape
        reverse_index = None
        if self.bidirectional:
            if cache is not None:
                raise ValueError("a bidirectional backbone cannot continue from a cache")
            reverse_index = reverse_within_sequences(seq_idx, b, L, hidden.device)
        for i, layer in enumerate(self.layers):
            hidden = layer(
                hidden,
                seq_idx=seq_idx,
                reverse_index=reverse_index,
                cache=None if cache is None else cache.layers[i],
            )
        return self.norm_f(hidden)

    def forward_right_padded(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """hidden: (b, L, D) with row ``i`` valid up to ``lengths[i]`` -> (b, L, D), equal on
        valid positions to running each row alone; values past a length are unspecified.

        No ``seq_idx`` is needed, so the layers take the plain (faster) FIR and scan paths:
        padding after a sequence cannot reach it in a causal pass, and the backward pass of
        a bidirectional stack reverses each row within its own length, so the padding stays
        behind the sequence there too.
        """
        b, L, _ = hidden.shape
        reverse_index = None
        if self.bidirectional:
            reverse_index = reverse_within_sequences(
                lengths_to_seq_idx(lengths, L), b, L, hidden.device
            )
        for layer in self.layers:
            hidden = layer(hidden, seq_idx=None, reverse_index=reverse_index)
        return self.norm_f(hidden)

    def step(self, hidden: torch.Tensor, cache: GFSSMCache) -> torch.Tensor:
        """One token per stream: hidden (b, D) -> (b, D)."""
        for layer, layer_cache in zip(self.layers, cache.layers):
            hidden = layer.step(hidden, layer_cache)
        return self.norm_f(hidden)

    def fork(self, hidden: torch.Tensor, cache: GFSSMCache) -> torch.Tensor:
        """``k`` continuations of ``L`` tokens per stream: hidden (b, k, L, D) ->
        (b, k, L, D), each as if from its own copy of ``cache`` (only read)."""
        for layer, layer_cache in zip(self.layers, cache.layers):
            hidden = layer.fork(hidden, layer_cache)
        return self.norm_f(hidden)

    def allocate_cache(
        self, batch_size: int, *, device=None, dtype: torch.dtype | None = None
    ) -> GFSSMCache:
        """An empty streaming cache on the model's device and dtype (unless given)."""
        if self.config.mixer == "attention":
            raise ValueError("the attention baseline has no streaming cache (mixer=attention)")
        ref = next(self.parameters())
        return GFSSMCache.allocate(
            self.config, batch_size, device=device or ref.device, dtype=dtype or ref.dtype
        )


class GFSSMForCausalLM(nn.Module):
    """Next-token model: input_ids (b, L) -> logits (b, L, vocab_size)."""

    def __init__(self, config: GFSSMConfig) -> None:
        super().__init__()
        if config.vocab_size < 1:
            raise ConfigError("GFSSMConfig.vocab_size=0: a causal LM needs vocab_size >= 1")
        self.config = config
        self.embedding = nn.Embedding(config.padded_vocab_size, config.d_model)
        self.backbone = GFSSMBackbone(config)
        self.lm_head = nn.Linear(config.d_model, config.padded_vocab_size, bias=False)
        init_weights(self, config)
        if config.tie_embeddings:
            self.lm_head.weight = self.embedding.weight

    def forward(
        self,
        input_ids: torch.Tensor,
        *,
        seq_idx: torch.Tensor | None = None,
        cache: GFSSMCache | None = None,
    ) -> torch.Tensor:
        """input_ids: (b, L) -> logits (b, L, vocab_size); ``cache`` continues a stream."""
        hidden = self.backbone(self.embedding(input_ids), seq_idx=seq_idx, cache=cache)
        return self.lm_head(hidden)[..., : self.config.vocab_size]

    def step(self, input_ids: torch.Tensor, cache: GFSSMCache) -> torch.Tensor:
        """input_ids: (b,) -> logits (b, vocab_size) for the next token; advances ``cache``."""
        hidden = self.backbone.step(self.embedding(input_ids), cache)
        return self.lm_head(hidden)[..., : self.config.vocab_size]

    def fork(self, input_ids: torch.Tensor, cache: GFSSMCache) -> torch.Tensor:
        """input_ids: (b, k, L), ``k`` continuations of each stream -> logits (b, k, L,
        vocab_size), each as if it ran from its own copy of ``cache``, which is not
        advanced: what-if continuations (every alternative base at a position, beam
        candidates) without copying the state once per branch."""
        hidden = self.backbone.fork(self.embedding(input_ids), cache)
        return self.lm_head(hidden)[..., : self.config.vocab_size]

    def allocate_cache(self, batch_size: int, *, device=None, dtype=None) -> GFSSMCache:
        return self.backbone.allocate_cache(batch_size, device=device, dtype=dtype)


class GFSSMEncoder(nn.Module):
    """Sequence encoder: token ids (b, L) or features (b, L, D) -> (b, L, D).

    Bidirectional by default (DNA encoders, offline speech); ``bidirectional=False`` gives a
    causal encoder that can stream with a cache. Padding (``lengths``) and packing
    (``seq_idx``) never leak into real positions; outputs at padding are zero.
    """

    def __init__(self, config: GFSSMConfig, *, bidirectional: bool = True) -> None:
        super().__init__()
        self.config = config
        self.bidirectional = bidirectional
        self.embedding = (
            nn.Embedding(config.padded_vocab_size, config.d_model) if config.vocab_size else None
        )
        self.backbone = GFSSMBackbone(config, bidirectional=bidirectional)
        init_weights(self, config)

    def forward(
        self,
        inputs: torch.Tensor,
        *,
        lengths: torch.Tensor | None = None,
        seq_idx: torch.Tensor | None = None,
        cache: GFSSMCache | None = None,
    ) -> torch.Tensor:
        """inputs: (b, L) ids or (b, L, D) features; lengths: (b,) valid lengths."""
        if inputs.dim() == 2:
            if self.embedding is None:
                raise ValueError("GFSSMEncoder got token ids but config.vocab_size is 0")
            inputs = self.embedding(inputs)
        b, L, _ = inputs.shape
        if lengths is not None and seq_idx is None and cache is None:
            out = self.backbone.forward_right_padded(inputs, lengths)
            valid = torch.arange(L, device=inputs.device)[None, :] < lengths[:, None]
            return out * valid[..., None].to(out.dtype)
        seq_idx, valid = mask_padding(seq_idx, lengths, L)
        out = self.backbone(inputs, seq_idx=seq_idx, cache=cache)
        if valid is not None:
            out = out * valid[..., None].to(out.dtype)
        return out

    def step(self, inputs: torch.Tensor, cache: GFSSMCache) -> torch.Tensor:
        """Causal encoders only: one frame per stream, (b, D) or ids (b,) -> (b, D)."""
        if inputs.dim() == 1:
            if self.embedding is None:
                raise ValueError("GFSSMEncoder got token ids but config.vocab_size is 0")
            inputs = self.embedding(inputs)
        return self.backbone.step(inputs, cache)

    def allocate_cache(self, batch_size: int, *, device=None, dtype=None) -> GFSSMCache:
        if self.bidirectional:
            raise ValueError("a bidirectional encoder has no streaming cache")
        return self.backbone.allocate_cache(batch_size, device=device, dtype=dtype)
