"""The super-resolution comparison, drawn one way everywhere (the cascade's run, the
``walt.evaluate sr`` sheet and the training sample logger): per clip, the low-res clip enlarged
with nearest neighbours | its bicubic upsampling | the SR output | the ground truth when there
is one.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from common.frames import resize_frames
from walt.media import contact_sheet

# Contact sheets of clips smaller than this (pixels high) are drawn at twice the size.
_SMALL_SHEET = 128


def upsample_frames(pixels: Tensor, scale: int, *, mode: str) -> Tensor:
    """``(B, C, T, h, w)`` pixels in [-1, 1] enlarged ``scale`` times per side, frame by frame
    (``"nearest"`` or ``"bicubic"``; bicubic overshoots at edges, so it is clamped)."""
    return resize_frames(pixels.float(), scale_factor=scale, mode=mode).clamp(-1.0, 1.0)


def bicubic_upsample(pixels: Tensor, scale: int) -> Tensor:
    """Bicubic upsampling of ``(B, C, T, h, w)`` pixels, the baseline an SR stage must beat."""
    return upsample_frames(pixels, scale, mode="bicubic")


def comparison_panels(
    lowres: Tensor, sr: Tensor, truth: Tensor | None = None
) -> tuple[Tensor, list[str]]:
    """The panels of each clip and their names: ``(B, K, C, T, H, W)`` from the low-res pixels
    ``lowres`` (B, C, T, h, w) and the SR output ``sr`` (B, C, T, H, W), ``H = s h``, plus the
    ground truth ``truth`` (B, C, T, H, W) when given (K = 3 or 4)."""
    scale = sr.shape[-1] // lowres.shape[-1]
    lowres, sr = lowres.float().cpu(), sr.float().cpu()
    panels = [upsample_frames(lowres, scale, mode="nearest"), bicubic_upsample(lowres, scale), sr]
    names = ["low-res", f"bicubic x{scale}", "SR"]
    if truth is not None:
        panels.append(truth.float().cpu())
        names.append("ground truth")
    return torch.stack(panels, dim=1), names  # (B, K, C, T, H, W)


def comparison_sheet(
    lowres: Tensor, sr: Tensor, path: str | Path, *, truth: Tensor | None = None,
    max_clips: int = 4,
) -> Path:
    """A contact sheet of :func:`comparison_panels` for the first ``max_clips`` clips, one
    panel per tile, the clips one after the other."""
    b = min(max_clips, lowres.shape[0])
    panels, names = comparison_panels(lowres[:b], sr[:b], None if truth is None else truth[:b])
    scale = 2 if sr.shape[-2] < _SMALL_SHEET else 1
    return contact_sheet(panels.flatten(0, 1), path, labels=names * b, scale=scale)
