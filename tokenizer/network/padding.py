"""Explicit padding of clips to the tokenizer's valid sizes (``T = 1 + 4k``, ``H, W % 8 == 0``).

The VAE never pads silently: ``encode(..., pad=True)`` calls these helpers and records the
original size so that ``decode(..., crop_to=...)`` can crop the reconstruction back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def valid_frames(frames: int, temporal: int) -> int:
    """Smallest ``1 + temporal * k >= frames``."""
    if frames < 1:
        raise ValueError(f"a clip needs at least 1 frame, got {frames}")
    k = -(-(frames - 1) // temporal)
    return 1 + temporal * k


def valid_pixels(size: int, spatial: int) -> int:
    """Smallest multiple of ``spatial`` that is ``>= size``."""
    if size < 1:
        raise ValueError(f"a frame side must be >= 1 pixel, got {size}")
    return -(-size // spatial) * spatial


def pad_clip(x: torch.Tensor, *, temporal: int, spatial: int) -> torch.Tensor:
    """Pad ``x`` (B, C, T, H, W) at the end (last frame repeated) and bottom/right (edge pixels)."""
    b, c, t, h, w = x.shape
    frames, height, width = (
        valid_frames(t, temporal),
        valid_pixels(h, spatial),
        valid_pixels(w, spatial),
    )
    if frames > t:
        x = torch.cat([x, x[:, :, -1:].expand(-1, -1, frames - t, -1, -1)], dim=2)
    if (height, width) != (h, w):
        flat = x.reshape(b, c * frames, h, w)
        flat = F.pad(flat, (0, width - w, 0, height - h), mode="replicate")
        x = flat.reshape(b, c, frames, height, width)
    return x
