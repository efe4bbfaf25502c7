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

from common.frames import resize_frames
from tokenizer.network.padding import pad_clip

SPATIAL = 8  # W.A.L.T's spatial compression
TEMPORAL = 4  # W.A.L.T's temporal compression (after the first frame)


def trivial_encode(pixels: torch.Tensor) -> torch.Tensor:
    """Pixels ``(B, C, T, H, W)``, ``T = 1 + 4k``, ``H, W`` multiples of 8 -> ``(B, C, 1 + k,
    H / 8, W / 8)``: the first frame alone, then the mean of each 4-frame group, 8x8 means."""
    if pixels.ndim != 5:
        raise ValueError(f"pixels must be (B, C, T, H, W), got shape {tuple(pixels.shape)}")
    b, _, t, h, w = pixels.shape
    if (t - 1) % TEMPORAL or h % SPATIAL or w % SPATIAL:
        raise ValueError(
            f"pixels needs T = 1 + {TEMPORAL}k and H, W multiples of {SPATIAL}, got {(t, h, w)};"
            " pass pad=True to trivial_codec"
        )
    rest = rearrange(pixels[:, :, 1:], "b c (k f) h w -> b c k f h w", f=TEMPORAL).mean(3)
    kept = torch.cat([pixels[:, :, :1], rest], dim=2)  # (B, C, 1 + k, H, W)
    small = F.avg_pool2d(rearrange(kept, "b c t h w -> (b t) c h w"), SPATIAL)
    return rearrange(small, "(b t) c h w -> b c t h w", b=b)  # (B, C, 1 + k, H/8, W/8)


def trivial_decode(grid: torch.Tensor) -> torch.Tensor:
    """``(B, C, 1 + k, h, w)`` -> ``(B, C, 1 + 4k, 8h, 8w)``: bicubic in space, each kept
    frame repeated over its group in time."""
    h, w = grid.shape[-2:]
    # (B, C, 1 + k, H, W)
    up = resize_frames(grid, size=(h * SPATIAL, w * SPATIAL), mode="bicubic").clamp(-1, 1)
    return torch.cat([up[:, :, :1], up[:, :, 1:].repeat_interleave(TEMPORAL, dim=2)], dim=2)


def trivial_codec(pixels: torch.Tensor, *, pad: bool = False) -> torch.Tensor:
    """Reconstruction ``(B, C, T, H, W)`` of ``pixels`` in [-1, 1] through the trivial codec.

    ``pad``: pad to ``T = 1 + 4k`` and multiples of 8 like ``CausalVAE.encode(pad=True)`` and
    crop the reconstruction back, instead of raising.
    """
    t, h, w = pixels.shape[2:] if pixels.ndim == 5 else (0, 0, 0)
    if pad and pixels.ndim == 5:
        pixels = pad_clip(pixels, temporal=TEMPORAL, spatial=SPATIAL)
    return trivial_decode(trivial_encode(pixels))[:, :, :t, :h, :w]
