"""A fixed (not learned) detector for the synthetic moving-shapes clips, used to score samples.

For one clip ``(3, T, H, W)`` (floats in [-1, 1] or uint8) it estimates:

- colour: the hue of the object's core pixels, nearest palette hue (hues are 60 deg apart);
- direction: the larger axis of the summed per-frame displacement of the mask centroid, both
  taken on the circle (the frame as a torus), so an object that leaves one edge and re-enters at
  the opposite one (``data.synthetic --motion wrap``) still moves one way; straight motion
  (displacements far below half the frame) reads as before;
- shape: the fill ratio of the mask in its bounding box (square ~1, circle ~pi/4, triangle
  ~1/2), median over the frames where the object does not touch the border (a cut object has
  the wrong fill); when it touches the border in every frame, the frames rolled by half their
  size (whole again on the torus).

The mask is the set of pixels farther from the background colour (the border median) than half
the object's contrast, which keeps the area stable under blur.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from data.synthetic import COLORS, DIRECTIONS, SHAPES

_SQUARE_MIN_FILL = 0.9  # between square (1.0) and circle (0.785)
_CIRCLE_MIN_FILL = 0.67  # between circle (0.785) and triangle (0.5)


@dataclass(frozen=True)
class Detection:
    """What the detector saw; ``None`` fields could not be estimated."""

    shape: str | None
    color: str | None
    direction: str | None


def to_frames(video: torch.Tensor | np.ndarray) -> np.ndarray:
    """``(3, T, H, W)`` in [-1, 1] (float) or [0, 255] (uint8) to ``(T, H, W, 3)`` in [0, 1]."""
    array = video.detach().cpu().float().numpy() if isinstance(video, torch.Tensor) else video
    if array.ndim != 4 or array.shape[0] != 3:
        raise ValueError(f"expected a clip (3, T, H, W), got shape {array.shape}")
    if np.issubdtype(array.dtype, np.integer):
        frames = array.astype(np.float32) / 255.0
    else:
        frames = (array.astype(np.float32) + 1.0) / 2.0
    return np.clip(np.moveaxis(frames, 0, -1), 0.0, 1.0)


def detect_shape(video: torch.Tensor | np.ndarray) -> Detection:
    """Estimate (shape, colour, direction) of the single moving object in a clip."""
    frames = to_frames(video)  # (T, H, W, 3)
    border = np.concatenate(
        [frames[:, 0], frames[:, -1], frames[:, :, 0], frames[:, :, -1]], axis=1
    ).reshape(-1, 3)
    background = np.median(border, axis=0)
    distance = np.linalg.norm(frames - background, axis=-1)  # (T, H, W)
    contrast = np.percentile(distance, 99.0)
    if contrast < 0.1:
        return Detection(None, None, None)
    raw = distance > 0.5 * contrast
    mask = _open(raw)
    core = distance > 0.75 * contrast
    return Detection(_shape(raw, mask), _color(frames[core]), _direction(mask))


def _open(mask: np.ndarray) -> np.ndarray:
    """3x3 morphological opening per frame: removes isolated noise pixels."""
    return _dilate(~_dilate(~mask))


def _dilate(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, ((0, 0), (1, 1), (1, 1)), mode="edge")
    height, width = mask.shape[1:]
    out = np.zeros_like(mask)
    for dy in range(3):
        for dx in range(3):
            out |= padded[:, dy : dy + height, dx : dx + width]
    return out


def _shape(raw: np.ndarray, opened: np.ndarray) -> str | None:
    """Median fill ratio over frames. The opened mask finds the object (no noise specks), but
    area and box come from the raw mask around it, since opening would cut the triangle's apex."""
    fills = _fills(raw, opened)
    if not fills:  # touching the border throughout: on the torus, half a frame away it is whole
        height, width = raw.shape[1:]
        rolled = [np.roll(m, (height // 2, width // 2), axis=(1, 2)) for m in (raw, opened)]
        fills = _fills(*rolled)
    if not fills:
        return None
    fill = float(np.median(fills))
    if fill >= _SQUARE_MIN_FILL:
        return "square"
    return "circle" if fill >= _CIRCLE_MIN_FILL else "triangle"


def _fills(raw: np.ndarray, opened: np.ndarray) -> list[float]:
    """Fill ratios of the frames whose object is found and does not touch the border."""
    fills = []
    height, width = raw.shape[1:]
    for frame, clean in zip(raw, opened):
        ys, xs = np.nonzero(clean)
        if len(ys) < 9 or ys.min() == 0 or xs.min() == 0 or ys.max() == height - 1 or (
            xs.max() == width - 1
        ):
            continue
        top, left = max(ys.min() - 2, 0), max(xs.min() - 2, 0)
        region = frame[top : ys.max() + 3, left : xs.max() + 3]
        ys, xs = np.nonzero(region)
        box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
        fills.append(len(ys) / box)
    return fills


def _color(pixels: np.ndarray) -> str | None:
    if len(pixels) == 0:
        return None
    red, green, blue = np.median(pixels, axis=0)
    hue, _, saturation = colorsys.rgb_to_hls(red, green, blue)
    if saturation < 0.15:
        return None
    hues = {name: colorsys.rgb_to_hls(*(np.array(rgb) / 255.0))[0] for name, rgb in COLORS.items()}
    return min(hues, key=lambda name: min(abs(hue - hues[name]), 1 - abs(hue - hues[name])))


def _direction(mask: np.ndarray) -> str | None:
    """Direction of the summed circular displacement of the mask centroid over frames."""
    if len(mask) < 2:
        return None
    centres = np.array([_circular_centroid(frame) for frame in mask])  # (T, 2) x, y
    found = centres[np.isfinite(centres).all(axis=1)]
    if len(found) < 2:
        return None
    size = np.array(mask.shape[:0:-1], dtype=np.float64)  # (W, H)
    # Each step wrapped into [-size/2, size/2): re-entering at the far edge is a small step.
    steps = (np.diff(found, axis=0) + size / 2) % size - size / 2
    dx, dy = steps.sum(axis=0)
    if max(abs(dx), abs(dy)) < 1.0:
        return None
    if abs(dx) >= abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


def _circular_centroid(frame: np.ndarray) -> tuple[float, float]:
    """(x, y) centroid of a ``(H, W)`` mask on the torus: the angle of the mean of the pixels'
    positions as points on the unit circle, so an object split across an edge is one object."""
    ys, xs = np.nonzero(frame)
    if not len(ys):
        return np.nan, np.nan
    centre = []
    for coords, size in ((xs, frame.shape[1]), (ys, frame.shape[0])):
        angle = np.angle(np.exp(2j * np.pi * coords / size).mean())
        centre.append((angle / (2 * np.pi) * size) % size)
    return centre[0], centre[1]


def parse_class_name(name: str) -> tuple[str, str, str]:
    """"red circle moving left" (an optional leading "a " allowed) to (shape, colour, direction)."""
    words = name.strip().lower().split()
    if words and words[0] == "a":
        words = words[1:]
    if len(words) != 4 or words[2] != "moving":
        raise ValueError(f"class name must look like 'red circle moving left', got {name!r}")
    color, shape, _, direction = words
    if shape not in SHAPES or color not in COLORS or direction not in DIRECTIONS:
        raise ValueError(f"unknown shape, colour or direction in class name {name!r}")
    return shape, color, direction


def score_samples(
    videos: torch.Tensor | Sequence[torch.Tensor | np.ndarray], class_names: Sequence[str]
) -> dict[str, float]:
    """Fraction of clips whose shape, colour, direction (all three: ``joint``; colour and
    direction together: ``color_direction``) match their class, and fraction in which the
    detector finds a moving object at all (``moving_object``).

    Args:
        videos: ``(B, 3, T, H, W)`` in [-1, 1] (or a sequence of ``(3, T, H, W)`` clips).
        class_names: the requested class of each clip, e.g. "red circle moving left".

    Returns:
        ``{"shape", "color", "direction", "color_direction", "joint", "moving_object"}``
        rates and ``"count"``.
    """
    if len(videos) != len(class_names):
        raise ValueError(f"{len(videos)} videos but {len(class_names)} class names")
    if len(videos) == 0:
        raise ValueError("no videos to score")
    hits = np.zeros((len(videos), 3), dtype=bool)
    seen = np.zeros(len(videos), dtype=bool)
    for index, (video, name) in enumerate(zip(videos, class_names)):
        found = detect_shape(video)
        found_all = (found.shape, found.color, found.direction)
        hits[index] = np.array(found_all) == parse_class_name(name)
        seen[index] = all(v is not None for v in found_all)
    rates = hits.mean(axis=0)
    return {
        "shape": float(rates[0]),
        "color": float(rates[1]),
        "direction": float(rates[2]),
        "color_direction": float(hits[:, 1:].all(axis=1).mean()),
        # a single object with a known shape and colour that moves in one of the directions
        "moving_object": float(seen.mean()),
        "joint": float(hits.all(axis=1).mean()),
        "count": float(len(videos)),
    }
