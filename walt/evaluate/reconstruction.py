"""PSNR and SSIM of generated videos against their ground truth, paired by key.

The metrics themselves are ``tokenizer.metrics.psnr`` / ``ssim`` (one implementation for the
project). What is scored depends on the task; for a generated video of ``T`` frames, compared
with the first ``T`` frames of its ground truth:

* ``reconstruction``: every frame (tokenizer round trips, super-resolution, ...);
* ``prediction``: frames ``context_frames .. T-1``, the given frames are left out (W.A.L.T's
  frame prediction conditions on the first frames, e.g. 5 of 16 on Kinetics-600);
* ``interpolation``: every frame except the key frames ``0, k, 2k, ...`` (``k =
  keyframe_every``), which were given.
"""

from __future__ import annotations

import functools
from typing import Literal

import numpy as np
import torch
from tqdm import tqdm

from data.pipeline import FAILURE_CHECK_AFTER, MAX_FAILURE_FRACTION, FailureGuard
from data.transforms import frames_to_pixels
from tokenizer.metrics import psnr, ssim
from walt.evaluate.draws import draw_indices, summarize
from walt.evaluate.inputs import (
    MediaItem,
    count_media,
    iter_media,
    read_frames,
    readable_media,
    resize_frames,
)

Task = Literal["reconstruction", "prediction", "interpolation"]
TASKS: tuple[str, ...] = ("reconstruction", "prediction", "interpolation")


def scored_frames(
    num_frames: int, *, task: Task, context_frames: int = 0, keyframe_every: int = 0
) -> list[int]:
    """Indices of the frames a task is scored on, in a video of ``num_frames`` frames."""
    if task == "reconstruction":
        return list(range(num_frames))
    if task == "prediction":
        if not 1 <= context_frames < num_frames:
            raise ValueError(
                f"context_frames must be in [1, {num_frames - 1}] for {num_frames}-frame videos, "
                f"got {context_frames}"
            )
        return list(range(context_frames, num_frames))
    if task == "interpolation":
        if keyframe_every < 2:
            raise ValueError(f"keyframe_every must be >= 2 for interpolation, got {keyframe_every}")
        return [t for t in range(num_frames) if t % keyframe_every]
    raise ValueError(f"task must be one of {TASKS}, got {task!r}")


def score_pair(
    generated: np.ndarray, reference: np.ndarray, frames: list[int], *, key: str
) -> dict[str, float]:
    """PSNR (dB) and SSIM of ``frames`` of two ``(T, H, W, 3)`` uint8 videos."""
    if len(reference) < len(generated):
        raise ValueError(
            f"{key}: the reference has {len(reference)} frames, fewer than the generated "
            f"{len(generated)}"
        )
    if generated.shape[1:] != reference.shape[1:]:
        raise ValueError(
            f"{key}: generated frames are {generated.shape[1:3]} but reference frames are "
            f"{reference.shape[1:3]}; pass --size to resize both"
        )
    size = generated.shape[1:3]
    gen = frames_to_pixels(generated[frames], size=size)[None]  # (1, 3, T', H, W)
    ref = frames_to_pixels(reference[frames], size=size)[None]
    return {"psnr": psnr(gen, ref).item(), "ssim": ssim(gen, ref).item()}


def score_folder(
    generated: str,
    reference: str,
    *,
    task: Task,
    context_frames: int = 0,
    keyframe_every: int = 0,
    size: int | None = None,
) -> list[dict]:
    """One row ``{"key", "frames", "psnr", "ssim"}`` per generated video, in key order.

    Every generated key must have a reference sample with the same key; reference samples that
    were not generated are ignored. A pair with an undecodable file is skipped, the file named
    in a warning, and the run stops past the loader's failure fraction (one guard over both
    sources: ``walt.evaluate.inputs.readable_media``).
    """
    wanted: dict[str, MediaItem] = {
        item.key: item for item in iter_media(generated, name="generated")
    }
    if not wanted:
        raise ValueError(f"generated: no videos or images found in {generated}")
    guard = FailureGuard(
        max_failure_fraction=MAX_FAILURE_FRACTION, failure_check_after=FAILURE_CHECK_AFTER
    )

    def decoded(item: MediaItem, **read: int) -> np.ndarray | None:
        """The item's frames (resized), or None when it does not decode (warned)."""
        for _, frames in readable_media([item], functools.partial(read_frames, **read),
                                        what=f"psnr {generated} / {reference}", guard=guard):
            return resize_frames(frames, size)
        return None

    rows: dict[str, dict] = {}
    unreadable: set[str] = set()
    total = count_media(reference)
    for ref in tqdm(
        iter_media(reference, name="reference"), total=total, desc="reference", unit="file"
    ):
        item = wanted.get(ref.key)
        if item is None or ref.key in rows or ref.key in unreadable:
            continue
        gen = decoded(item)
        truth = None if gen is None else decoded(ref, max_frames=len(gen))
        if truth is None:
            unreadable.add(ref.key)
            continue
        frames = scored_frames(
            len(gen), task=task, context_frames=context_frames, keyframe_every=keyframe_every
        )
        rows[ref.key] = {
            "key": ref.key,
            "frames": len(frames),
            **score_pair(gen, truth, frames, key=ref.key),
        }
    missing = sorted(set(wanted) - set(rows) - unreadable)
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise ValueError(f"reference: no sample with the key of generated {shown}")
    if not rows:
        raise ValueError(f"no generated video of {generated} and its reference could be read")
    return [rows[key] for key in sorted(rows)]


def reconstruction_draws(
    rows: list[dict], *, draw_size: int | None, num_draws: int, seed: int
) -> dict[str, dict]:
    """Mean PSNR and SSIM over random draws of the videos (mean ± std over draws)."""
    generator = torch.Generator().manual_seed(seed)
    draws = draw_indices(
        len(rows), draw_size=draw_size, num_draws=num_draws, generator=generator, name="videos"
    )
    out = {}
    for metric in ("psnr", "ssim"):
        values = torch.tensor([row[metric] for row in rows], dtype=torch.float64)
        out[metric] = summarize([values[idx].mean().item() for idx in draws])
    return out
