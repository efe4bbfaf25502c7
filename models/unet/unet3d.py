"""``Unet3D``: the factorized space-time U-Net of Video Diffusion Models (Ho et al. 2022, Sec. 3).

Convolutions are ``1 x 3 x 3`` (space only); each block is followed by spatial attention and then
temporal attention with a relative position bias, so frames only meet in temporal attention.
``prob_focus_present`` masks temporal attention to the identity for that fraction of training
videos, which makes them a batch of independent images: VDM's joint image-video training.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from common.registry import register
from models.unet.unet import FactorizedUnet


@register("backbone")
class Unet3D(FactorizedUnet):
    """VDM's 3D U-Net: spatial convs, spatial attention, temporal attention at every level."""

    def __init__(
        self,
        *,
        dim: int = 64,
        dim_mult: Sequence[int] = (1, 2, 4, 8),
        num_res_blocks: int | Sequence[int] = 2,
        attn_levels: bool | Sequence[bool] = (False, False, True, True),
        temporal_attn_levels: bool | Sequence[bool] | None = True,
        prob_focus_present: float = 0.0,
        enable_time: bool = True,
        **kwargs: Any,
    ) -> None:
        """Args:
        dim: channels of the first level.
        dim_mult: channel multiplier per level.
        num_res_blocks: residual blocks per level (an int or one per level).
        attn_levels: levels with spatial attention (each followed by temporal attention).
        temporal_attn_levels: levels with temporal attention (VDM: all; ``None`` =
            ``attn_levels``).
        prob_focus_present: fraction of training videos whose frames are made independent.
        enable_time: ``False`` builds the 2D image model (no temporal parameters).
        **kwargs: the remaining options of ``FactorizedUnet`` (conditioning, heads, ...).
        """
        if "temporal_conv" in kwargs or kwargs.get("temporal_compression"):
            raise ValueError(
                "Unet3D has 1x3x3 convs and no temporal_compression; use SpaceTimeUnet for those"
            )
        super().__init__(
            dim=dim,
            dim_mult=dim_mult,
            num_res_blocks=num_res_blocks,
            attn_levels=attn_levels,
            temporal_attn_levels=temporal_attn_levels,
            prob_focus_present=prob_focus_present,
            enable_time=enable_time,
            temporal_conv=False,
            **kwargs,
        )
