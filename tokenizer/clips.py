"""Iterate evaluation clips from webdataset shards or from a folder of media files."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import torch

from data.decode import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS


def folder_clips(
    folder: Path, *, num_frames: int, size: int, images: bool
) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, pixels (1, 3, T, H, W)) for each decodable video (and image) in ``folder``.

    Videos shorter than ``num_frames`` are skipped (reported by name on stderr).
    """
    import sys

    from data.decode import ShortClipError, decode_clip, decode_image
    from data.transforms import frames_to_pixels

    files = sorted(p for p in folder.rglob("*") if p.is_file())
    for path in files:
        ext = path.suffix.lower().lstrip(".")
        if ext in VIDEO_EXTENSIONS:
            try:
                clip = decode_clip(
                    path.read_bytes(),
                    num_frames=num_frames,
                    clip_start="start",
                    rng=random.Random(0),
                )
            except ShortClipError:
                print(f"skipping {path.name}: shorter than {num_frames} frames", file=sys.stderr)
                continue
            frames = clip.frames
        elif images and ext in IMAGE_EXTENSIONS:
            frames = decode_image(path.read_bytes())[None]
        else:
            continue
        yield path.name, frames_to_pixels(frames, size=(size, size), crop="center")[None]


def shard_clips(
    shards: str, *, num_frames: int, size: int, images: bool, batch_size: int = 1
) -> Iterator[tuple[str, torch.Tensor]]:
    """(key, pixels (B, 3, T, H, W)) batches from shards (validation order, centre crops)."""
    from data.datamodule import WebVideoDataModule

    dm = WebVideoDataModule(
        val_videos=shards,
        val_images=shards if images else None,
        num_frames=num_frames,
        size=size,
        batch_size=batch_size,
        num_workers=0,
    )
    dm.setup("validate")
    for batch in dm.val_dataloader():
        for stream in batch.values():
            yield ",".join(stream["key"]), stream["pixels"]


def iter_clips(
    source: str, *, num_frames: int, size: int, images: bool = False, batch_size: int = 1
) -> Iterator[tuple[str, torch.Tensor]]:
    """Clips from a folder of media or from shards (a path, brace pattern or list)."""
    path = Path(source)
    if path.is_dir():
        yield from folder_clips(path, num_frames=num_frames, size=size, images=images)
    else:
        yield from shard_clips(
            source, num_frames=num_frames, size=size, images=images, batch_size=batch_size
        )
