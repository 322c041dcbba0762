"""One decode step of the scan for a batch of streams, in plain PyTorch (spec section 3)."""

from __future__ import annotations

import math

import torch

from gfssm.kernels.ssd.reference import compute_dtype, discretize, learned_sink_readout
from gfssm.kernels.state import ScanState


def ssd_step_reference(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    *,
    state: ScanState,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = True,
    dt_limit: tuple[float, float] = (0.0, math.inf),
    sink_k: torch.Tensor | None = None,
    sink_v: torch.Tensor | None = None,
    sink_gain: torch.Tensor | None = None,
    n_init: int = 0,
) -> tuple[torch.Tensor, ScanState]:
    """Advance every stream by one token.

    x: (b, H, P), dt: (b, H), B and C: (b, G, N), state: ScanState of (b, H, P, N).
    Returns y: (b, H, P) and the new state (states stay in the compute dtype).
    """
    b, H, P = x.shape
    G, N = B.shape[-2:]
    cdt = compute_dtype(x.dtype)
    delta = discretize(dt[:, None], dt_bias, dt_softplus, dt_limit, cdt)[:, 0]  # (b, H)
    decay = torch.exp(delta * A.to(cdt))
    xc = x.to(cdt)
    Bh = B.to(cdt).repeat_interleave(H // G, dim=1)  # (b, H, N)
    Ch = C.to(cdt).repeat_interleave(H // G, dim=1)
    update = (delta[..., None] * xc)[..., None] * Bh[:, :, None, :]  # (b, H, P, N)
    ssm = state.ssm.to(cdt) * decay[..., None, None] + update
    is_init = (state.seen < n_init).to(cdt).view(b, 1, 1, 1)
    init_sink = state.init_sink.to(cdt) + is_init * update
    read = ssm
    if sink_gain is not None:
        read = read + sink_gain.to(cdt).view(1, H, 1, 1) * init_sink
    y = torch.einsum("bhpn,bhn->bhp", read, Ch)
    if sink_k is not None and sink_v is not None:
        y = y + learned_sink_readout(C.to(cdt), sink_k, sink_v, H)
    if D is not None:
        y = y + xc * D.to(cdt)[:, None]
    return y.to(x.dtype), ScanState(ssm=ssm, init_sink=init_sink, seen=state.seen + 1)
