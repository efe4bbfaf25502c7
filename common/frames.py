"""Resize a video frame by frame: the one place that folds time into the batch for
``F.interpolate`` (pixels and latents alike)."""

from __future__ import annotations

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

# Modes whose sampling grid depends on ``align_corners`` (the others refuse the argument).
_GRID_MODES = ("linear", "bilinear", "bicubic", "trilinear")


def resize_frames(
    video: Tensor,
    *,
    size: tuple[int, int] | None = None,
    scale_factor: float | None = None,
    mode: str = "bilinear",
    antialias: bool = False,
) -> Tensor:
    """``(B, C, T, H, W) -> (B, C, T, H', W')``: each frame resized to ``size`` or by
    ``scale_factor`` with ``F.interpolate`` (``align_corners=False`` where the mode takes it;
    ``antialias`` for shrinking with bilinear or bicubic)."""
    b = video.shape[0]
    frames = rearrange(video, "b c t h w -> (b t) c h w")
    kw = {"align_corners": False} if mode in _GRID_MODES else {}
    if antialias:
        kw["antialias"] = True
    out = F.interpolate(frames, size=size, scale_factor=scale_factor, mode=mode, **kw)
    return rearrange(out, "(b t) c h w -> b c t h w", b=b)
