"""The carried state of the scan between calls (streaming, spec section 4)."""

from __future__ import annotations

from typing import NamedTuple

import torch


class ScanState(NamedTuple):
    """State of ``ssd_scan`` for a batch of streams.

    ssm:       (b, H, P, N) the decaying state ``S``.
    init_sink: (b, H, P, N) the initial-token sink ``I`` (never decays).
    seen:      (b,) int64, tokens seen so far by each stream (drives ``t < n_init``).
    """

    ssm: torch.Tensor
    init_sink: torch.Tensor
    seen: torch.Tensor

    @classmethod
    def zeros(
        cls,
        batch: int,
        nheads: int,
        headdim: int,
        d_state: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> ScanState:
        shape = (batch, nheads, headdim, d_state)
        return cls(
            ssm=torch.zeros(shape, device=device, dtype=dtype),
            init_sink=torch.zeros(shape, device=device, dtype=dtype),
            seen=torch.zeros(batch, device=device, dtype=torch.long),
        )
