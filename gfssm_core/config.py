"""The frozen model configuration and its presets (spec sections 1, 3 and 6)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

PRESETS = ("gfssm", "mamba2", "transformer")
MIXERS = ("ssm", "attention")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field."""


@dataclass(frozen=True)
class GFSSMConfig:
    """Sizes and switches of a GFSSM model.

    ``d_inner = expand * d_model`` is split into ``nheads = d_inner / headdim`` heads; ``ngroups``
    groups share B and C. ``fir_sizes`` lists the tap counts of the FIR channel groups,
    ``n_sink`` the learned sink slots, ``n_init`` the initial tokens kept by the sink, and
    ``A_floor`` the minimum decay rate. ``d_mlp = 0`` means blocks without an MLP.
    ``mixer = "attention"`` replaces every GFSSM layer by rotary self-attention with
    ``d_model / headdim`` heads (the Transformer baseline; the SSM fields are then unused).
    """

    d_model: int = 256
    n_layer: int = 4
    vocab_size: int = 0
    d_state: int = 64
    headdim: int = 64
    expand: int = 2
    ngroups: int = 1
    chunk_size: int = 64
    fir_sizes: tuple[int, ...] = (4, 8, 16, 32)
    fir_bias: bool = True
    n_sink: int = 4
    n_init: int = 4
    A_floor: float = 1e-4
    A_init_range: tuple[float, float] = (1.0, 16.0)
    dt_min: float = 1e-3
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    dt_limit: tuple[float, float] = (0.0, math.inf)
    d_mlp: int = 0
    norm_eps: float = 1e-5
    proj_bias: bool = False
    tie_embeddings: bool = True
    pad_vocab_multiple: int = 8
    initializer_range: float = 0.02
    mixer: str = "ssm"

    def __post_init__(self) -> None:
        # Tuples, so that YAML lists and JSON round-trips give an equal, hashable config.
        object.__setattr__(self, "fir_sizes", tuple(int(k) for k in self.fir_sizes))
        object.__setattr__(self, "A_init_range", tuple(float(v) for v in self.A_init_range))
        object.__setattr__(self, "dt_limit", tuple(float(v) for v in self.dt_limit))
        self._validate()

    # Derived sizes -----------------------------------------------------------------
    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def nheads(self) -> int:
        return self.d_inner // self.headdim

    @property
    def fir_channels(self) -> int:
        """Channels of xBC that the FIR filters: x, then B, then C."""
        return self.d_inner + 2 * self.ngroups * self.d_state

    @property
    def fir_max(self) -> int:
        return max(self.fir_sizes)

    @property
    def padded_vocab_size(self) -> int:
        m = self.pad_vocab_multiple
        return -(-self.vocab_size // m) * m if m > 1 else self.vocab_size

    # Presets and (de)serialisation ---------------------------------------------------
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> GFSSMConfig:
        """``gfssm`` (all three mechanisms), ``mamba2`` (Mamba-2 exactly) or ``transformer``
        (the causal attention baseline of the same widths), plus overrides."""
        if name == "gfssm":
            base: dict[str, Any] = dict(fir_sizes=(4, 8, 16, 32), n_sink=4, n_init=4, A_floor=1e-4)
        elif name == "mamba2":
            base = dict(fir_sizes=(4,), n_sink=0, n_init=0, A_floor=0.0)
        elif name == "transformer":
            base = dict(mixer="attention", fir_sizes=(4,), n_sink=0, n_init=0, A_floor=0.0)
        else:
            raise ConfigError(f"preset: unknown preset {name!r}; expected one of {PRESETS}")
        base.update(overrides)
        return cls.from_dict(base)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GFSSMConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"GFSSMConfig: unknown field(s) {unknown}; valid fields: {sorted(known)}"
            )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["fir_sizes"] = list(self.fir_sizes)
        out["A_init_range"] = list(self.A_init_range)
        out["dt_limit"] = list(self.dt_limit)
        return out

    def replace(self, **changes: Any) -> GFSSMConfig:
        return dataclasses.replace(self, **changes)

    # Validation -----------------------------------------------------------------------
    def _validate(self) -> None:
        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"GFSSMConfig.{name}={getattr(self, name)!r}: {why}")

        for name in ("d_model", "n_layer", "d_state", "headdim", "expand", "ngroups"):
            if int(getattr(self, name)) < 1:
                raise bad(name, "must be a positive integer")
        if self.d_inner % self.headdim:
            raise bad(
                "headdim",
                f"d_inner = expand * d_model = {self.d_inner} must be divisible by headdim",
            )
        if self.nheads % self.ngroups:
            raise bad("ngroups", f"the {self.nheads} heads must split evenly into ngroups")
        if self.chunk_size < 1 or self.chunk_size & (self.chunk_size - 1):
            raise bad("chunk_size", "must be a power of two")
        if not self.fir_sizes or min(self.fir_sizes) < 1:
            raise bad("fir_sizes", "must be a non-empty list of tap counts >= 1")
        for name in ("n_sink", "n_init", "vocab_size", "d_mlp"):
            if int(getattr(self, name)) < 0:
                raise bad(name, "must be >= 0")
        if self.A_floor < 0:
            raise bad("A_floor", "must be >= 0")
        lo, hi = self.A_init_range
        if not 0 < lo <= hi:
            raise bad("A_init_range", "must be (lo, hi) with 0 < lo <= hi")
        if not 0 < self.dt_min <= self.dt_max:
            raise bad("dt_min", f"must satisfy 0 < dt_min <= dt_max={self.dt_max}")
        if not 0 <= self.dt_limit[0] <= self.dt_limit[1]:
            raise bad("dt_limit", "must be (lo, hi) with 0 <= lo <= hi")
        if self.mixer not in MIXERS:
            raise bad("mixer", f"expected one of {MIXERS}")
        if self.mixer == "attention" and (self.d_model % self.headdim or self.headdim % 2):
            raise bad("headdim", "attention needs an even headdim that divides d_model")
        if self.norm_eps <= 0:
            raise bad("norm_eps", "must be > 0")
