"""``ResBlock``: the U-Net's residual conv block with timestep/condition scale-shift (DDPM,
Ho et al. 2020; the FiLM-style ``(1 + scale) * h + shift`` of Dhariwal & Nichol 2021).

Convolutions are ``PseudoConv3d`` (Make-A-Video) or spatial-only ``1 x 3 x 3`` (Video Diffusion
Models, ``temporal_conv=False``). Group norms are taken per frame, so a video is processed
exactly like its frames would be by the image model until the temporal layers learn something.
"""

from __future__ import annotations

from collections.abc import Callable
from math import gcd

from einops import rearrange
from torch import Tensor, nn

from models.unet.pseudo_conv import PseudoConv3d


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    """``GroupNorm`` with ``gcd(groups, channels)`` groups, so any width is valid."""
    return nn.GroupNorm(gcd(groups, channels), channels, eps=1e-6)


def per_frame(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """Apply a 2D layer to each frame: ``(B, C, T, H, W)`` -> ``(B, C', T, H, W)``."""
    if x.ndim == 4:
        return fn(x)
    b = x.shape[0]
    y = fn(rearrange(x, "b c t h w -> (b t) c h w"))
    return rearrange(y, "(b t) c h w -> b c t h w", b=b)


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv -> scale-shift(cond) -> GroupNorm -> SiLU -> conv, + skip."""

    def __init__(
        self,
        *,
        dim_in: int,
        dim_out: int,
        cond_dim: int,
        temporal_conv: bool = True,
        causal_time: bool = False,
        groups: int = 32,
        dropout: float = 0.0,
    ) -> None:
        """Args:
        dim_in: input channels.
        dim_out: output channels.
        cond_dim: width of the conditioning vector (timestep + class/text/extra).
        temporal_conv: factorized 3x3 + temporal-3 convs (``False``: ``1 x 3 x 3`` only).
        causal_time: causal temporal convs.
        groups: GroupNorm groups (reduced to ``gcd(groups, channels)``).
        dropout: dropout before the second conv.
        """
        super().__init__()
        conv = dict(enable_time=temporal_conv, causal_time=causal_time)
        self.norm1 = group_norm(dim_in, groups)
        self.conv1 = PseudoConv3d(dim_in=dim_in, dim_out=dim_out, **conv)
        self.cond = nn.Linear(cond_dim, 2 * dim_out)
        self.norm2 = group_norm(dim_out, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = PseudoConv3d(dim_in=dim_out, dim_out=dim_out, **conv)
        self.skip = nn.Conv2d(dim_in, dim_out, 1) if dim_in != dim_out else nn.Identity()

    def forward(
        self,
        x: Tensor,
        cond: Tensor,
        *,
        enable_time: bool = True,
        image_frames: Tensor | None = None,
    ) -> Tensor:
        """Args:
        x: ``(B, C_in, T, H, W)``.
        cond: ``(B, cond_dim)`` activated conditioning vector.
        enable_time: use the temporal convs.
        image_frames: ``(B, T)`` bool mask of packed images (see ``PseudoConv3d``).

        Returns:
            ``(B, C_out, T, H, W)``.
        """
        kw = dict(enable_time=enable_time, image_frames=image_frames)
        h = self.conv1(nn.functional.silu(per_frame(self.norm1, x)), **kw)
        scale, shift = self.cond(cond)[:, :, None, None, None].chunk(2, dim=1)  # (B, C, 1, 1, 1)
        h = per_frame(self.norm2, h) * (1 + scale) + shift
        h = self.conv2(self.dropout(nn.functional.silu(h)), **kw)
        return h + per_frame(self.skip, x)
