"""Writing generated clips: mp4 (PyAV), gif and PNG contact sheets (Pillow), loss curves (matplotlib).

Everything takes pixels in the project's convention, ``(C, T, H, W)`` or ``(B, C, T, H, W)``
floats in ``[-1, 1]``. Every file is written through ``common.atomic``: an interrupted write
leaves the previous file or none, never a truncated one.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw

from common.atomic import atomic_path
from data.encode import to_uint8_frames, write_mp4


def write_mp4_clip(video: torch.Tensor, path: str | Path, *, fps: float = 8.0) -> Path:
    """Encode one (3, T, H, W) clip in [-1, 1] as MP4."""
    return write_mp4(to_uint8_frames(video), path, fps=fps)


def write_gif(video: torch.Tensor, path: str | Path, *, fps: float = 8.0, scale: int = 1) -> Path:
    """Write one (3, T, H, W) clip as a looping gif, optionally upscaled (nearest) for viewing."""
    images = [Image.fromarray(f) for f in to_uint8_frames(video)]
    if scale > 1:
        images = [im.resize((im.width * scale, im.height * scale), Image.NEAREST) for im in images]
    path = Path(path)
    with atomic_path(path) as tmp:
        images[0].save(
            tmp, format="GIF", save_all=True, append_images=images[1:],
            duration=round(1000 / fps), loop=0,
        )
    return path


def contact_sheet(
    videos: torch.Tensor,
    path: str | Path,
    *,
    labels: Sequence[str] | None = None,
    max_frames: int = 9,
    scale: int = 2,
) -> Path:
    """One PNG: a row per clip, ``max_frames`` evenly spaced frames per row, with an optional label.

    Args:
        videos: (B, C, T, H, W) in [-1, 1].
        path: output PNG.
        labels: one caption per row, drawn on the left.
        max_frames: frames shown per clip.
        scale: nearest-neighbour upscaling for small clips.
    """
    b, _, t, h, w = videos.shape
    idx = np.linspace(0, t - 1, num=min(max_frames, t)).round().astype(int)
    label_w = 110 if labels else 0
    hs, ws = h * scale, w * scale
    sheet = Image.new("RGB", (label_w + len(idx) * (ws + 2), b * (hs + 2)), "white")
    draw = ImageDraw.Draw(sheet)
    for row in range(b):
        frames = to_uint8_frames(videos[row])
        for col, fi in enumerate(idx):
            tile = Image.fromarray(frames[fi]).resize((ws, hs), Image.NEAREST)
            sheet.paste(tile, (label_w + col * (ws + 2), row * (hs + 2)))
        if labels:
            draw.text((4, row * (hs + 2) + hs // 2 - 6), str(labels[row])[:18], fill="black")
    path = Path(path)
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")  # the temporary name has no extension
    return path


def write_samples(
    videos: torch.Tensor,
    out: str | Path,
    *,
    labels: Sequence[str] | None = None,
    fps: float = 8.0,
) -> tuple[list[Path], Path]:
    """Write a batch of generated clips: ``sample_XXX.mp4`` and ``.gif`` per clip, and a
    ``contact_sheet.png`` with a row per clip captioned by ``labels``.

    Shared by ``python -m walt.generate`` and the training-time ``SampleLogger``.

    Args:
        videos: (B, C, T, H, W) in [-1, 1].
        out: output folder (created).
        labels: one caption per clip (e.g. ``class 3`` or the class name).
        fps: frame rate of the mp4s and gifs.

    Returns:
        the mp4 paths and the contact sheet's path.
    """
    out = Path(out)
    mp4s = []
    for i, video in enumerate(videos):
        mp4s.append(write_mp4_clip(video, out / f"sample_{i:03d}.mp4", fps=fps))
        write_gif(video, out / f"sample_{i:03d}.gif", fps=fps, scale=2)
    return mp4s, contact_sheet(videos, out / "contact_sheet.png", labels=labels)


def loss_curve(metrics_csv: str | Path, path: str | Path, *, keys: Sequence[str] | None = None) -> Path:
    """Plot the ``train/loss*`` columns of a Lightning ``CSVLogger`` metrics file against the step."""
    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{metrics_csv} holds no logged rows")
    keys = keys or sorted(k for k in rows[0] if k.startswith("train/loss"))
    # The object API with its own Agg canvas: headless, and no global pyplot backend is set.
    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for key in keys:
        pts = [(int(r["step"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]
        if pts:
            steps, values = zip(*pts)
            ax.plot(steps, _smooth(values), label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format=path.suffix.lstrip(".") or "png")
    return path


def _smooth(values: Sequence[float], window: int = 0) -> list[float]:
    """Moving average over ~2% of the points, so noisy diffusion losses stay readable."""
    window = window or max(1, math.ceil(len(values) / 50))
    out, acc = [], []
    for v in values:
        acc.append(v)
        if len(acc) > window:
            acc.pop(0)
        out.append(sum(acc) / len(acc))
    return out
