"""The trivial codec: the floor every tokenizer reconstruction figure is read against.

It keeps exactly the latent grid of W.A.L.T / MAGVIT-v2 (Gupta et al. 2023; Yu et al. 2023):
8x in space, 4x in time with the first frame alone (``T = 1 + 4k`` -> ``1 + k`` frames), but
with the 3 pixel channels instead of 8 latent channels. Down: mean over each 8x8 block and each
4-frame group. Up: bicubic in space (clamped to [-1, 1]); in time each kept frame is repeated
over its own group, so a frame's reconstruction never uses frames of a later group (causal).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange


def trivial_codec(pixels: torch.Tensor) -> torch.Tensor:
    """``(B, C, T, H, W)`` in [-1, 1] -> same shape; ``T = 1 + 4k``, ``H``, ``W`` multiples of 8."""
    if pixels.ndim != 5:
        raise ValueError(f"pixels must be (B, C, T, H, W), got shape {tuple(pixels.shape)}")
    b, _, t, h, w = pixels.shape
    if (t - 1) % 4 or h % 8 or w % 8:
        raise ValueError(f"pixels needs T = 1 + 4k and H, W multiples of 8, got {(t, h, w)}")
    first = pixels[:, :, :1]  # (B, C, 1, H, W)
    rest = pixels[:, :, 1:]  # (B, C, 4k, H, W)
    groups = rearrange(rest, "b c (k f) h w -> b c k f h w", f=4).mean(3) if t > 1 else rest
    kept = torch.cat([first, groups], dim=2)  # (B, C, 1 + k, H, W)
    small = F.avg_pool2d(rearrange(kept, "b c t h w -> (b t) c h w"), 8)  # (B(1+k), C, H/8, W/8)
    up = F.interpolate(small, size=(h, w), mode="bicubic", align_corners=False).clamp(-1, 1)
    up = rearrange(up, "(b t) c h w -> b c t h w", b=b)  # (B, C, 1 + k, H, W)
    return torch.cat([up[:, :, :1], up[:, :, 1:].repeat_interleave(4, dim=2)], dim=2)
