"""Resize, crop and normalise decoded frames into the project's pixel convention.

Frames are scaled (keeping the aspect ratio) so that they just cover the target ``H x W`` -
for a square target that is "short side to size" - and then cropped to ``H x W``: at a random
offset for training, centred for validation. Output is float ``(C, T, H, W)`` in ``[-1, 1]``.
"""

from __future__ import annotations

import math
import random
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

Crop = Literal["random", "center"]


def as_size(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``(H, W)`` from an int (square) or a pair; raises on non-positive sizes."""
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or any(int(v) != v or v <= 0 for v in pair):
        raise ValueError(f"size must be a positive int or a pair (H, W) of them, got {size!r}")
    return int(pair[0]), int(pair[1])


def cover_size(height: int, width: int, size: tuple[int, int]) -> tuple[int, int]:
    """Smallest ``(h, w)`` with the input's aspect ratio that covers ``size``."""
    scale = max(size[0] / height, size[1] / width)
    return max(size[0], math.ceil(height * scale - 1e-6)), max(size[1], math.ceil(width * scale - 1e-6))


def crop_offset(
    resized: tuple[int, int], size: tuple[int, int], crop: Crop, rng: random.Random | None
) -> tuple[int, int]:
    """Top-left corner of the crop inside the resized frame."""
    spare_h, spare_w = resized[0] - size[0], resized[1] - size[1]
    if crop == "center":
        return spare_h // 2, spare_w // 2
    if crop == "random":
        rng = rng if rng is not None else random.Random()
        return rng.randint(0, spare_h), rng.randint(0, spare_w)
    raise ValueError(f"crop must be 'random' or 'center', got {crop!r}")


def frames_to_pixels(
    frames: np.ndarray,
    *,
    size: tuple[int, int],
    crop: Crop = "center",
    rng: random.Random | None = None,
    zoom: float = 1.0,
) -> torch.Tensor:
    """``(T, H0, W0, 3)`` uint8 frames to ``(3, T, H, W)`` float pixels in ``[-1, 1]``.

    Args:
        frames: decoded RGB frames (an image is ``T = 1``).
        size: output ``(H, W)``.
        crop: "random" (training) or "center" (validation).
        rng: random source for ``crop="random"``.
        zoom: scale the frames to cover ``zoom x size`` (not ``size``) before cropping, so the
            crop sees a ``1 / zoom`` part of the view at a finer scale (``>= 1``).
    """
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got shape {frames.shape}")
    video = torch.from_numpy(np.require(frames, requirements=["C", "W"]))
    video = rearrange(video, "t h w c -> t c h w").float()  # (T, 3, H0, W0)
    if zoom < 1.0:
        raise ValueError(f"zoom must be >= 1, got {zoom}")
    cover = (math.ceil(size[0] * zoom - 1e-6), math.ceil(size[1] * zoom - 1e-6))
    resized = cover_size(video.shape[-2], video.shape[-1], cover)
    if resized != tuple(video.shape[-2:]):
        # Antialiasing matters when shrinking 720p to 64-256 px; without it frames alias.
        video = F.interpolate(video, size=resized, mode="bilinear", antialias=True, align_corners=False)
    top, left = crop_offset(resized, size, crop, rng)
    video = video[:, :, top : top + size[0], left : left + size[1]]
    video = (video / 127.5 - 1.0).clamp_(-1.0, 1.0)
    return rearrange(video, "t c h w -> c t h w").contiguous()  # (3, T, H, W)


def draw_zoom(
    zoom: tuple[float, float] | None,
    rng: random.Random,
    *,
    choices: tuple[float, ...] | None = None,
) -> float:
    """A zoom factor drawn uniformly from the set ``choices`` if given, else from the range
    ``zoom`` (1 when both are ``None``)."""
    if choices:
        return rng.choice(choices)
    if zoom is None:
        return 1.0
    low, high = zoom
    return low if low == high else rng.uniform(low, high)


def check_zoom(zoom: float | tuple[float, float] | list[float] | None) -> tuple[float, float] | None:
    """``(low, high)`` from a zoom range (a number is a fixed zoom); raises unless ``1 <= low
    <= high``."""
    if zoom is None:
        return None
    pair = (zoom, zoom) if isinstance(zoom, (int, float)) else tuple(zoom)
    if len(pair) != 2 or not 1.0 <= float(pair[0]) <= float(pair[1]):
        raise ValueError(f"zoom must be a number >= 1 or a range [low, high] with 1 <= low <= high, got {zoom!r}")
    return float(pair[0]), float(pair[1])


def check_zoom_choices(
    choices: list[float] | tuple[float, ...] | None, *, zoom: object = None
) -> tuple[float, ...] | None:
    """The zoom set as a tuple; raises unless it is non-empty with every factor ``>= 1``, and
    unless ``zoom`` (a range) is unset: a sample draws from one or the other."""
    if choices is None:
        return None
    if zoom is not None:
        raise ValueError(f"give zoom (a range) or zoom_choices (a set), not both: {zoom!r}, {choices!r}")
    factors = tuple(float(c) for c in choices) if isinstance(choices, (list, tuple)) else ()
    if not factors or min(factors) < 1.0:
        raise ValueError(f"zoom_choices must be a non-empty list of factors >= 1, got {choices!r}")
    return factors
