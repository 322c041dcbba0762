"""One GFSSM layer (spec section 1): in_proj -> grouped FIR -> SSD scan with sinks ->
gated RMS norm -> out_proj."""

from __future__ import annotations

import math

import torch
from torch import nn

from gfssm.cache import LayerCache
from gfssm.config import GFSSMConfig
from gfssm.kernels import fir_step, grouped_fir, ssd_scan, ssd_step
from gfssm.kernels.fork import fir_fork, ssd_fork
from gfssm.layers import RMSNormGated, at_least_fp32, no_weight_decay


def fir_channel_sizes(config: GFSSMConfig) -> torch.Tensor:
    """(C_fir,) tap count of every xBC channel (spec section 2).

    x channels: head ``h`` is in FIR group ``h * F // H``; B and C channels: state index
    ``n`` (in every B/C group) is in FIR group ``n * F // N``.
    """
    F_, H, P, N = len(config.fir_sizes), config.nheads, config.headdim, config.d_state
    sizes = torch.tensor(config.fir_sizes, dtype=torch.long)
    head = torch.arange(H).repeat_interleave(P)
    x_sizes = sizes[head * F_ // H]
    n = torch.arange(N).repeat(config.ngroups)
    bc_sizes = sizes[n * F_ // N]
    return torch.cat([x_sizes, bc_sizes, bc_sizes])


class GFSSMMixer(nn.Module):
    """The GFSSM layer: u (b, L, D) -> (b, L, D); streams through a :class:`LayerCache`."""

    def __init__(self, config: GFSSMConfig) -> None:
        super().__init__()
        self.config = config
        cfg = config
        di, H, G, N = cfg.d_inner, cfg.nheads, cfg.ngroups, cfg.d_state
        self.in_proj = nn.Linear(cfg.d_model, 2 * di + 2 * G * N + H, bias=cfg.proj_bias)
        self.fir_weight = nn.Parameter(torch.empty(cfg.fir_channels, cfg.fir_max))
        self.fir_bias = (
            no_weight_decay(nn.Parameter(torch.empty(cfg.fir_channels))) if cfg.fir_bias else None
        )
        self.register_buffer("fir_kernel_sizes", fir_channel_sizes(cfg), persistent=False)
        self.A_log = no_weight_decay(nn.Parameter(torch.empty(H)))
        self.dt_bias = no_weight_decay(nn.Parameter(torch.empty(H)))
        self.D = no_weight_decay(nn.Parameter(torch.ones(H)))
        if cfg.n_sink > 0:
            self.sink_k = nn.Parameter(torch.empty(cfg.n_sink, G, N))
            self.sink_v = nn.Parameter(torch.zeros(cfg.n_sink, H, cfg.headdim))
        else:
            self.register_parameter("sink_k", None)
            self.register_parameter("sink_v", None)
        if cfg.n_init > 0:
            self.sink_gain = no_weight_decay(nn.Parameter(torch.zeros(H)))
        else:
            self.register_parameter("sink_gain", None)
        self.norm = RMSNormGated(di, di // G, eps=cfg.norm_eps)
        self.out_proj = nn.Linear(di, cfg.d_model, bias=cfg.proj_bias)
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(self) -> None:
        """The spec's initialisation (section 3) plus conv1d's default for the FIR taps."""
        cfg = self.config
        H = cfg.nheads
        lo, hi = cfg.A_init_range
        self.A_log.copy_(torch.log(torch.empty(H).uniform_(lo, hi)))
        dt = torch.exp(
            torch.rand(H) * (math.log(cfg.dt_max) - math.log(cfg.dt_min)) + math.log(cfg.dt_min)
        ).clamp(min=cfg.dt_init_floor)
        self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.D.fill_(1.0)
        # conv1d's default init, per channel with fan_in = its own tap count.
        bound = (1.0 / self.fir_kernel_sizes.float().sqrt())[:, None]
        self.fir_weight.copy_((torch.rand_like(self.fir_weight) * 2 - 1) * bound)
        if self.fir_bias is not None:
            self.fir_bias.copy_((torch.rand_like(self.fir_bias) * 2 - 1) * bound[:, 0])
        if self.sink_k is not None:
            self.sink_k.normal_(0.0, 1.0 / math.sqrt(cfg.d_state))
            self.sink_v.zero_()
        if self.sink_gain is not None:
            self.sink_gain.zero_()

    def A(self) -> torch.Tensor:
        """(H,) negative decay rates ``-(exp(A_log) + A_floor)``."""
        return -(torch.exp(at_least_fp32(self.A_log)) + self.config.A_floor)

    def _split_projection(self, zxbcdt: torch.Tensor):
        cfg = self.config
        return torch.split(zxbcdt, [cfg.d_inner, cfg.fir_channels, cfg.nheads], dim=-1)

    def _split_xbc(self, xbc: torch.Tensor):
        cfg = self.config
        gn = cfg.ngroups * cfg.d_state
        return torch.split(xbc, [cfg.d_inner, gn, gn], dim=-1)

    def _scan_kwargs(self) -> dict:
        cfg = self.config
        return dict(
            dt_bias=self.dt_bias,
            dt_softplus=True,
            dt_limit=cfg.dt_limit,
            sink_k=self.sink_k,
            sink_v=self.sink_v,
            sink_gain=self.sink_gain,
            n_init=cfg.n_init,
        )

    def forward(
        self,
        u: torch.Tensor,
        *,
        seq_idx: torch.Tensor | None = None,
        cache: LayerCache | None = None,
    ) -> torch.Tensor:
        """u: (b, L, D), seq_idx: (b, L). With ``cache`` the layer continues from it and
        leaves its final state there."""
        cfg = self.config
        b, L, _ = u.shape
        z, xbc, dt = self._split_projection(self.in_proj(u))
        fir = grouped_fir(
            xbc,
            self.fir_weight,
            self.fir_bias,
            self.fir_kernel_sizes,
            activation="silu",
            seq_idx=seq_idx,
            initial_inputs=None if cache is None else cache.fir_inputs,
            return_final_inputs=cache is not None,
        )
        if cache is not None:
            fir, cache.fir_inputs = fir
        x, B, C = self._split_xbc(fir)
        out = ssd_scan(
            x.reshape(b, L, cfg.nheads, cfg.headdim),
            dt,
            self.A(),
            B.reshape(b, L, cfg.ngroups, cfg.d_state),
            C.reshape(b, L, cfg.ngroups, cfg.d_state),
            self.D,
            chunk_size=cfg.chunk_size,
            seq_idx=seq_idx,
            initial_state=None if cache is None else cache.scan,
            return_final_state=cache is not None,
            **self._scan_kwargs(),
        )
        if cache is not None:
            y, cache.scan = out
        else:
            y = out
        return self.out_proj(self.norm(y.reshape(b, L, cfg.d_inner), z))

    def step(self, u: torch.Tensor, cache: LayerCache) -> torch.Tensor:
        """One token per stream: u (b, D) -> (b, D); advances ``cache`` in place."""
        cfg = self.config
        b = u.shape[0]
        z, xbc, dt = self._split_projection(self.in_proj(u))
        fir, cache.fir_inputs = fir_step(
            xbc,
            cache.fir_inputs,
            self.fir_weight,
            self.fir_bias,
            self.fir_kernel_sizes,
            activation="silu",
        )
        x, B, C = self._split_xbc(fir)
        y, cache.scan = ssd_step(
            x.reshape(b, cfg.nheads, cfg.headdim),
            dt,
            self.A(),
            B.reshape(b, cfg.ngroups, cfg.d_state),
            C.reshape(b, cfg.ngroups, cfg.d_state),
            self.D,
            state=cache.scan,
            **self._scan_kwargs(),
        )
        return self.out_proj(self.norm(y.reshape(b, cfg.d_inner), z))

    def fork(self, u: torch.Tensor, cache: LayerCache) -> torch.Tensor:
        """``k`` continuations of ``L`` tokens per stream: u (b, k, L, D) -> (b, k, L, D),
        each as if it stepped its own copy of ``cache``, which is left as it was."""
        cfg = self.config
        b, k, L, _ = u.shape
        z, xbc, dt = self._split_projection(self.in_proj(u))
        fir = fir_fork(xbc, cache.fir_inputs, self.fir_weight, self.fir_bias, self.fir_kernel_sizes)
        x, B, C = self._split_xbc(fir)
        y = ssd_fork(
            x.reshape(b, k, L, cfg.nheads, cfg.headdim),
            dt,
            self.A(),
            B.reshape(b, k, L, cfg.ngroups, cfg.d_state),
            C.reshape(b, k, L, cfg.ngroups, cfg.d_state),
            self.D,
            state=cache.scan,
            **self._scan_kwargs(),
        )
        return self.out_proj(self.norm(y.reshape(b, k, L, cfg.d_inner), z))
