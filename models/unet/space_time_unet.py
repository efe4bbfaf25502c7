"""``SpaceTimeUnet``: Make-A-Video's space-time U-Net (Singer et al. 2022, Sec. 3.2).

Every convolution is a ``PseudoConv3d`` (2D spatial, then 1D temporal initialised to the
identity) and every attention a ``SpatioTemporalAttention`` (spatial, then temporal with a zero
output projection), so the network starts as its image model applied frame by frame. Time may be
compressed at chosen levels (``temporal_compression``), which trades that exact start for a
cheaper deep path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from common.registry import register
from models.unet.unet import FactorizedUnet


@register("backbone")
class SpaceTimeUnet(FactorizedUnet):
    """Factorized conv + attention U-Net with optional temporal compression per level."""

    def __init__(
        self,
        *,
        dim: int = 64,
        dim_mult: Sequence[int] = (1, 2, 4, 4),
        num_res_blocks: int | Sequence[int] = 2,
        attn_levels: bool | Sequence[bool] = (False, False, True, True),
        temporal_compression: bool | Sequence[bool] = False,
        enable_time: bool = True,
        **kwargs: Any,
    ) -> None:
        """Args:
        dim: channels of the first level.
        dim_mult: channel multiplier per level.
        num_res_blocks: residual blocks per level (an int or one per level).
        attn_levels: levels with spatial + temporal attention after each block.
        temporal_compression: levels after which time halves (``T -> 1 + (T - 1) / 2``).
        enable_time: ``False`` builds the 2D image model (no temporal parameters) for the
            first stage of Make-A-Video's recipe.
        **kwargs: the remaining options of ``FactorizedUnet`` (conditioning, heads, ...).
        """
        if "temporal_conv" in kwargs:
            raise ValueError("SpaceTimeUnet always has temporal convs; use Unet3D for 1x3x3 ones")
        super().__init__(
            dim=dim,
            dim_mult=dim_mult,
            num_res_blocks=num_res_blocks,
            attn_levels=attn_levels,
            temporal_compression=temporal_compression,
            enable_time=enable_time,
            temporal_conv=True,
            **kwargs,
        )
