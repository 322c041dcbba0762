"""GFSSM: Mamba-2's SSD with grouped FIR filtering, grouped decay products and an
attention-sink state (the normative math is in the project's GFSSM spec).

Build a model from a frozen config::

    from gfssm import GFSSMConfig, GFSSMForCausalLM
    model = GFSSMForCausalLM(GFSSMConfig.preset("gfssm", d_model=128, n_layer=2, vocab_size=16))
"""

from gfssm.attention import SelfAttention
from gfssm.block import BidirectionalMixer, GFSSMBlock
from gfssm.cache import GFSSMCache, LayerCache
from gfssm.config import PRESETS, ConfigError, GFSSMConfig
from gfssm.layers import GatedMLP, RMSNorm, RMSNormGated
from gfssm.mixer import GFSSMMixer, fir_channel_sizes
from gfssm.model import GFSSMBackbone, GFSSMEncoder, GFSSMForCausalLM
from gfssm.optim import param_groups
from gfssm.packing import lengths_to_seq_idx, reverse_within_sequences

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "BidirectionalMixer",
    "ConfigError",
    "GFSSMBackbone",
    "GFSSMBlock",
    "GFSSMCache",
    "GFSSMConfig",
    "GFSSMEncoder",
    "GFSSMForCausalLM",
    "GFSSMMixer",
    "GatedMLP",
    "LayerCache",
    "RMSNorm",
    "RMSNormGated",
    "SelfAttention",
    "__version__",
    "fir_channel_sizes",
    "lengths_to_seq_idx",
    "param_groups",
    "reverse_within_sequences",
]
