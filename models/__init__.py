"""The W.A.L.T backbone: a windowed DiT over patchified latents (see ``docs/models.md``)."""

from models.attention import ATTN_BACKENDS, attention, default_attn_backend, xformers_available
from models.backbone import Backbone
from models.blocks import WindowBlock
from models.dit import WindowedDiT
from models.registry import DIT_PRESETS, preset_config
from models.unet import SpaceTimeUnet, Unet3D, inflate_from_2d

__all__ = [
    "ATTN_BACKENDS",
    "Backbone",
    "DIT_PRESETS",
    "SpaceTimeUnet",
    "Unet3D",
    "WindowBlock",
    "WindowedDiT",
    "attention",
    "default_attn_backend",
    "inflate_from_2d",
    "preset_config",
    "xformers_available",
]
