"""Spatial and temporal down/upsampling between U-Net levels.

Space: a stride-2 ``3 x 3`` conv down, nearest x2 + ``3 x 3`` conv up, per frame. Time (the
temporal compression of Make-A-Video-style space-time U-Nets, optional per level): the project's
clips have ``T = 1 + 2m`` frames (``1 + 4k`` in pixels), so time halves as ``T -> 1 + (T - 1) / 2``
with a stride-2 conv that keeps frames ``0, 2, 4, ...`` at init, and doubles back as
``T -> 2T - 1`` by repeating frames, followed by an identity-initialised temporal conv. The first
frame is kept apart from the rest in both, as in the causal tokenizer.
"""

from __future__ import annotations

import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn

from models.unet.resblock import per_frame


def _time_conv(dim: int, *, stride: int) -> nn.Conv1d:
    conv = nn.Conv1d(dim, dim, 3, stride=stride, padding=1)
    nn.init.dirac_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


def _over_time(conv: nn.Conv1d, x: Tensor) -> Tensor:
    """``(B, C, T, H, W)`` -> ``(B, C, T', H, W)`` through a 1D conv over frames."""
    b, _, _, h, w = x.shape
    y = conv(rearrange(x, "b c t h w -> (b h w) c t"))
    return rearrange(y, "(b h w) c t -> b c t h w", b=b, h=h, w=w)


class Downsample(nn.Module):
    """Halve ``H, W`` (and ``T -> 1 + (T - 1) / 2`` when ``temporal``)."""

    def __init__(self, *, dim: int, temporal: bool = False) -> None:
        """Args:
        dim: channels (kept).
        temporal: also compress time (builds a temporal conv).
        """
        super().__init__()
        self.spatial = nn.Conv2d(dim, dim, 3, stride=2, padding=1)
        self.temporal = _time_conv(dim, stride=2) if temporal else None

    def forward(self, x: Tensor, *, enable_time: bool = True) -> Tensor:
        """``(B, C, T, H, W)`` -> ``(B, C, T', H / 2, W / 2)``."""
        x = per_frame(self.spatial, x)
        if self.temporal is None or not enable_time or x.shape[2] == 1:
            return x
        return _over_time(self.temporal, x)  # (B, C, 1 + (T - 1) / 2, H/2, W/2)


class Upsample(nn.Module):
    """Double ``H, W`` (and ``T -> 2T - 1`` when ``temporal``)."""

    def __init__(self, *, dim_in: int, dim_out: int, temporal: bool = False) -> None:
        """Args:
        dim_in: input channels.
        dim_out: output channels.
        temporal: also expand time (builds a temporal conv).
        """
        super().__init__()
        self.spatial = nn.Conv2d(dim_in, dim_out, 3, padding=1)
        self.temporal = _time_conv(dim_out, stride=1) if temporal else None

    def forward(self, x: Tensor, *, enable_time: bool = True) -> Tensor:
        """``(B, C_in, T, H, W)`` -> ``(B, C_out, T', 2H, 2W)``."""
        x = per_frame(lambda f: self.spatial(F.interpolate(f, scale_factor=2.0)), x)
        if self.temporal is None or not enable_time or x.shape[2] == 1:
            return x
        x = repeat(x, "b c t h w -> b c (t two) h w", two=2)[:, :, 1:]  # (B, C, 2T - 1, H, W)
        return _over_time(self.temporal, x)
