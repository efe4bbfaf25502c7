"""Factorized space-time U-Net baselines (Make-A-Video, Video Diffusion Models); see
``docs/unet.md``."""

from models.unet.inflation import inflate_from_2d, is_temporal_key, load_2d_state_dict
from models.unet.pseudo_conv import PseudoConv3d
from models.unet.space_time_unet import SpaceTimeUnet
from models.unet.st_attention import SpatioTemporalAttention
from models.unet.unet import FactorizedUnet
from models.unet.unet3d import Unet3D

__all__ = [
    "FactorizedUnet",
    "PseudoConv3d",
    "SpaceTimeUnet",
    "SpatioTemporalAttention",
    "Unet3D",
    "inflate_from_2d",
    "is_temporal_key",
    "load_2d_state_dict",
]
