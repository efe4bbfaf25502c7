"""Synthetic "moving shapes" shards: class-labelled videos (MP4) and images (PNG).

Usage::

    python -m data.synthetic OUT_PATTERN [--num-videos 300] [--num-images 0] [--frames 17]
        [--size 64] [--fps 8] [--shapes circle,square] [--colors red,blue]
        [--directions left,right] [--motion straight|wrap] [--speed 0.03,0.06] [--seed 0]

Each clip shows one flat-coloured shape on a plain dark background moving in a straight line.
A class is a (shape, colour, direction) triple; ``cls`` is its index in :func:`class_names`
order, ``txt`` a caption such as "a red circle moving left", and ``json`` holds the class-name
list and the object's true per-frame centre. Images are the first frame of a clip of the same
class. Everything is a function of ``--seed``.

``--motion`` chooses how the object moves:

- ``straight`` (the default): one run across 60-90% of the frame, inside it from the first
  frame to the last. A clip has a start and an end: extended past its length (W.A.L.T App. A,
  autoregressive extension) the object has nowhere left to go, so a model trained on such clips
  parks it at the edge and the long video loses its direction.
- ``wrap``: constant velocity on a torus, ``--speed MIN,MAX`` frame widths per frame (drawn per
  clip); the object leaves one edge and re-enters at the opposite one, so every window of a clip
  looks like every other and a clip can be extended indefinitely without leaving its class.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from data.encode import encode_video
from data.shards import ShardSink

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "yellow": (230, 220, 40),
    "green": (40, 210, 60),
    "cyan": (40, 210, 230),
    "blue": (50, 70, 240),
    "magenta": (225, 50, 225),
}
DIRECTIONS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
BACKGROUND: tuple[int, int, int] = (24, 24, 24)
MOTIONS: tuple[str, ...] = ("straight", "wrap")
WRAP_SPEED: tuple[float, float] = (0.03, 0.06)  # frame widths per frame: 1-2 px at 32 px
_SUPERSAMPLE = 4  # sub-pixel samples per axis for anti-aliased edges


@dataclass(frozen=True)
class ShapeClass:
    """One class: a shape of one colour moving in one direction."""

    shape: str
    color: str
    direction: str

    @property
    def name(self) -> str:
        return f"{self.color} {self.shape} moving {self.direction}"

    @property
    def caption(self) -> str:
        return f"a {self.name}"


def class_list(
    shapes: Sequence[str] = SHAPES,
    colors: Sequence[str] = tuple(COLORS),
    directions: Sequence[str] = tuple(DIRECTIONS),
) -> list[ShapeClass]:
    """All classes, shape-major then colour then direction (the ``cls`` index order)."""
    for value, known, what in ((shapes, SHAPES, "shape"), (colors, COLORS, "colour"),
                               (directions, DIRECTIONS, "direction")):
        unknown = [v for v in value if v not in known]
        if unknown or not value:
            raise ValueError(f"unknown or empty {what} list {list(value)}; choose from {list(known)}")
    return [ShapeClass(s, c, d) for s, c, d in itertools.product(shapes, colors, directions)]


def class_names(
    shapes: Sequence[str] = SHAPES,
    colors: Sequence[str] = tuple(COLORS),
    directions: Sequence[str] = tuple(DIRECTIONS),
) -> list[str]:
    """Class names such as "red circle moving left", in ``cls`` index order."""
    return [c.name for c in class_list(shapes, colors, directions)]


def shape_mask(shape: str, center: tuple[float, float], radius: float, size: int) -> np.ndarray:
    """Anti-aliased coverage ``(size, size)`` in [0, 1] of a shape centred at (x, y).

    ``radius`` is half the object's width; the triangle points up with base = height = width.
    """
    # Only the pixels of the object's bounding box (plus one) can be covered: sampling just those
    # gives the same coverage as sampling the whole frame, at a fraction of the cost.
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; choose from {list(SHAPES)}")
    cover = np.zeros((size, size))
    (x0, x1), (y0, y1) = (
        (max(0, int(np.floor(c - radius)) - 1), min(size, int(np.ceil(c + radius)) + 1))
        for c in center
    )
    if x0 >= x1 or y0 >= y1:
        return cover
    step = 1.0 / _SUPERSAMPLE
    sub = (np.arange(_SUPERSAMPLE) + 0.5) * step  # sub-pixel offsets
    ys = (np.arange(y0, y1)[:, None] + sub).reshape(-1)
    xs = (np.arange(x0, x1)[:, None] + sub).reshape(-1)
    y, x = np.meshgrid(ys, xs, indexing="ij")
    dx, dy = x - center[0], y - center[1]
    if shape == "circle":
        inside = dx**2 + dy**2 <= radius**2
    elif shape == "square":
        inside = (np.abs(dx) <= radius) & (np.abs(dy) <= radius)
    else:  # triangle: apex at the top, the half-width growing linearly to radius at the base
        depth = (dy + radius) / (2 * radius)
        inside = (depth >= 0) & (depth <= 1) & (np.abs(dx) <= depth * radius)
    fine = inside.reshape(y1 - y0, _SUPERSAMPLE, x1 - x0, _SUPERSAMPLE)
    cover[y0:y1, x0:x1] = fine.mean(axis=(1, 3))
    return cover


def trajectory(
    direction: str, *, frames: int, size: int, object_size: int, rng: np.random.Generator,
    motion: str = "straight", speed: tuple[float, float] = WRAP_SPEED,
) -> np.ndarray:
    """``(T, 2)`` object centres (x, y) of one clip (module docstring, ``--motion``).

    ``straight``: a run across 60-90% of the frame, the object inside it throughout. ``wrap``:
    constant velocity, ``speed`` frame widths per frame, centres taken modulo ``size``.
    """
    margin = object_size / 2 + 1
    step_x, step_y = DIRECTIONS[direction]
    across = rng.uniform(margin, size - margin)  # the object never wraps across its motion
    if motion == "straight":
        travel = (size - 2 * margin) * rng.uniform(0.6, 0.9)
        start_along = rng.uniform(margin, size - margin - travel)
        progress = np.linspace(0.0, 1.0, frames) if frames > 1 else np.zeros(1)
        along = start_along + travel * progress
        if step_x + step_y < 0:  # left or up: run from the far end back towards 0
            along = size - along
    elif motion == "wrap":
        velocity = rng.uniform(*speed) * size * (step_x + step_y)  # signed px per frame
        along = (rng.uniform(0.0, size) + velocity * np.arange(frames)) % size
    else:
        raise ValueError(f"unknown motion {motion!r}; choose from {list(MOTIONS)}")
    xs, ys = (along, np.full(frames, across)) if step_x else (np.full(frames, across), along)
    return np.stack([xs, ys], axis=1)


def render_clip(
    cls: ShapeClass, *, frames: int, size: int, object_size: int, rng: np.random.Generator,
    motion: str = "straight", speed: tuple[float, float] = WRAP_SPEED,
) -> tuple[np.ndarray, np.ndarray]:
    """``(T, size, size, 3)`` uint8 frames and the ``(T, 2)`` true centres."""
    centres = trajectory(cls.direction, frames=frames, size=size, object_size=object_size,
                         rng=rng, motion=motion, speed=speed)
    background = np.array(BACKGROUND, dtype=np.float32)
    color = np.array(COLORS[cls.color], dtype=np.float32)
    step_x, step_y = DIRECTIONS[cls.direction]
    # On the torus the object is also drawn one frame width behind and ahead along its motion,
    # so the part that leaves one edge shows at the opposite one.
    copies = (-size, 0, size) if motion == "wrap" else (0,)
    out = np.empty((frames, size, size, 3), dtype=np.uint8)
    for index, (cx, cy) in enumerate(centres):
        cover = np.zeros((size, size))
        for shift in copies:
            centre = (cx + shift * abs(step_x), cy + shift * abs(step_y))
            cover = np.maximum(cover, shape_mask(cls.shape, centre, object_size / 2, size))
        out[index] = np.round(background + cover[..., None] * (color - background)).astype(np.uint8)
    return out, centres


def make_sample(
    index: int, classes: list[ShapeClass], *, frames: int, size: int, object_size: int,
    fps: float, seed: int, image: bool, motion: str = "straight",
    speed: tuple[float, float] = WRAP_SPEED,
) -> dict[str, Any]:
    """Sample ``index`` (class ``index % len(classes)``), fully determined by ``seed``."""
    label = index % len(classes)
    cls = classes[label]
    rng = np.random.default_rng([seed, index, int(image)])
    # An image is the first frame of a clip; the first centre does not depend on `frames`.
    clip, centres = render_clip(cls, frames=1 if image else frames, size=size,
                                object_size=object_size, rng=rng, motion=motion, speed=speed)
    meta = {
        "kind": "image" if image else "video",
        "class_name": cls.name, "class_names": [c.name for c in classes],
        "shape": cls.shape, "color": cls.color, "direction": cls.direction,
        "size": size, "object_size": object_size, "seed": seed, "motion": motion,
        "trajectory": np.round(centres[:1] if image else centres, 3).tolist(),
    }
    sample: dict[str, Any] = {"cls": str(label), "txt": cls.caption}
    if image:
        buffer = io.BytesIO()
        Image.fromarray(clip[0]).save(buffer, format="png")
        sample.update(__key__=f"image{index:06d}", png=buffer.getvalue())
    else:
        meta.update(fps=fps, frames=frames)
        sample.update(__key__=f"video{index:06d}", mp4=encode_video(clip, fps=fps))
    sample["json"] = json.dumps(meta)
    return sample


def write_synthetic(
    pattern: str, *, num_videos: int = 300, num_images: int = 0, frames: int = 17,
    size: int = 64, fps: float = 8.0, object_size: int | None = None,
    shapes: Sequence[str] = SHAPES, colors: Sequence[str] = tuple(COLORS),
    directions: Sequence[str] = tuple(DIRECTIONS), seed: int = 0, samples_per_shard: int = 100,
    motion: str = "straight", speed: tuple[float, float] = WRAP_SPEED,
) -> dict[str, Any]:
    """Write the shards; returns ``{"videos", "images", "shards", "class_names"}``.

    ``motion`` is "straight" or "wrap" and ``speed`` the wrap speed range in frame widths per
    frame (module docstring).
    """
    if motion not in MOTIONS:
        raise ValueError(f"motion must be one of {list(MOTIONS)}, got {motion!r}")
    if len(speed) != 2 or not 0 < speed[0] <= speed[1] < 0.5:
        raise ValueError(f"speed must be MIN,MAX frame widths per frame in (0, 0.5), got {speed}")
    if size % 2 or size < 16:
        raise ValueError(f"size must be even and >= 16, got {size}")
    object_size = object_size or max(8, round(size * 0.3))
    if not 4 <= object_size <= size // 2:
        raise ValueError(f"object_size must be in [4, size/2], got {object_size}")
    classes = class_list(shapes, colors, directions)
    kinds = [(i, False) for i in range(num_videos)] + [(i, True) for i in range(num_images)]
    # Fixed member mtime: the bytes are a function of the seed. Each shard is renamed into
    # place only when complete (data.shards.ShardSink).
    with ShardSink(pattern, max_samples=samples_per_shard, mtime=0.0) as sink:
        for index, image in kinds:
            sink.write(make_sample(index, classes, frames=frames, size=size, fps=fps, seed=seed,
                                   object_size=object_size, image=image, motion=motion,
                                   speed=speed))
    shards = len(sink.paths)
    return {"videos": num_videos, "images": num_images, "shards": shards,
            "class_names": [c.name for c in classes]}


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data.synthetic", description=__doc__.split("\n")[0])
    parser.add_argument("pattern", help="output pattern, e.g. data/shapes/shard-%%06d.tar")
    parser.add_argument("--num-videos", type=int, default=300)
    parser.add_argument("--num-images", type=int, default=0)
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--fps", type=float, default=8.0)
    parser.add_argument("--object-size", type=int, default=None, help="default 0.3 * size")
    parser.add_argument("--shapes", type=_names, default=list(SHAPES))
    parser.add_argument("--colors", type=_names, default=list(COLORS))
    parser.add_argument("--directions", type=_names, default=list(DIRECTIONS))
    parser.add_argument("--motion", choices=MOTIONS, default="straight",
                        help="straight: one run inside the frame; wrap: on a torus (extendable)")
    parser.add_argument("--speed", type=lambda text: tuple(float(v) for v in text.split(",")),
                        default=WRAP_SPEED, help="wrap speed range MIN,MAX in frame widths/frame")
    parser.add_argument("--samples-per-shard", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if "%" not in args.pattern:
        parser.error(f"pattern needs a printf field such as %06d, got {args.pattern!r}")
    for flag in ("num_videos", "num_images"):
        if getattr(args, flag) < 0:
            parser.error(f"--{flag.replace('_', '-')} must be >= 0, got {getattr(args, flag)}")
    summary = write_synthetic(
        args.pattern, num_videos=args.num_videos, num_images=args.num_images, frames=args.frames,
        size=args.size, fps=args.fps, object_size=args.object_size, shapes=args.shapes,
        colors=args.colors, directions=args.directions, seed=args.seed,
        samples_per_shard=args.samples_per_shard, motion=args.motion, speed=args.speed,
    )
    print(f"wrote {summary['videos']} videos and {summary['images']} images into "
          f"{summary['shards']} shard(s) ({args.pattern}); {len(summary['class_names'])} classes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
