"""Streaming state of a causal GFSSM stack (spec section 4): per layer, the last
``K_max - 1`` FIR inputs and the scan state; one entry per batch stream."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gfssm.config import GFSSMConfig
from gfssm.kernels import ScanState


@dataclass
class LayerCache:
    """fir_inputs: (b, K_max-1, C_fir) oldest first; scan: ScanState of (b, H, P, N)."""

    fir_inputs: torch.Tensor
    scan: ScanState

    def select(self, index: torch.Tensor) -> LayerCache:
        return LayerCache(
            fir_inputs=self.fir_inputs.index_select(0, index),
            scan=ScanState(*(t.index_select(0, index) for t in self.scan)),
        )


@dataclass
class GFSSMCache:
    """The cache of a whole stack; layers are updated in place as the model runs."""

    layers: list[LayerCache]

    @classmethod
    def allocate(
        cls,
        config: GFSSMConfig,
        batch_size: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> GFSSMCache:
        """An empty cache (nothing seen yet). FIR inputs take the activation ``dtype``;
        scan states stay float32 (float64 for float64 models)."""
        state_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        layers = [
            LayerCache(
                fir_inputs=torch.zeros(
                    batch_size, config.fir_max - 1, config.fir_channels, device=device, dtype=dtype
                ),
                scan=ScanState.zeros(
                    batch_size,
                    config.nheads,
                    config.headdim,
                    config.d_state,
                    device=device,
                    dtype=state_dtype,
                ),
            )
            for _ in range(config.n_layer)
        ]
        return cls(layers)

    @property
    def seen(self) -> torch.Tensor:
        """(b,) tokens each stream has consumed."""
        return self.layers[0].scan.seen

    @property
    def batch_size(self) -> int:
        return int(self.layers[0].scan.seen.shape[0])

    def select(self, index: torch.Tensor) -> GFSSMCache:
        """The cache of streams ``index`` (b',), e.g. to drop finished streams."""
        return GFSSMCache([layer.select(index) for layer in self.layers])

    @classmethod
    def cat(cls, caches: list[GFSSMCache]) -> GFSSMCache:
        """One cache holding the streams of ``caches`` in order (the inverse of
        :meth:`select`), e.g. to run streams saved one by one as a batch."""
        layers = []
        for parts in zip(*(c.layers for c in caches)):
            scan = ScanState(*(torch.cat(ts) for ts in zip(*(p.scan for p in parts))))
            layers.append(LayerCache(torch.cat([p.fir_inputs for p in parts]), scan))
        return cls(layers)

    def detach(self) -> GFSSMCache:
        """Cut the autograd history (truncated back-propagation through time)."""
        return GFSSMCache(
            [
                LayerCache(layer.fir_inputs.detach(), ScanState(*(t.detach() for t in layer.scan)))
                for layer in self.layers
            ]
        )
