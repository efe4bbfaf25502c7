"""The W.A.L.T backbone: a windowed DiT over patchified latents (see ``docs/models.md``)."""

from models.attention import ATTN_BACKENDS, attention, default_attn_backend, xformers_available
from models.blocks import WindowBlock
from models.dit import WindowedDiT
from models.registry import DIT_PRESETS, preset_config

__all__ = [
    "ATTN_BACKENDS",
    "DIT_PRESETS",
    "WindowBlock",
    "WindowedDiT",
    "attention",
    "default_attn_backend",
    "preset_config",
    "xformers_available",
]
