"""Iterate evaluation clips from webdataset shards or from a folder of media files."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import torch

from data.datamodule import WebVideoDataModule
from data.decode import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    ShortClipError,
    decode_clip,
    decode_image,
)
from data.make_shards import media_files
from data.pipeline import skip_unreadable
from data.transforms import frames_to_pixels


def folder_clips(
    folder: Path,
    *,
    num_frames: int,
    size: int,
    images: bool,
    clips_per_file: int = 1,
    target_fps: float | None = None,
) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, pixels (1, 3, T, H, W)) for each decodable video (and image) in ``folder``.

    Frames are resized so the short side is ``size``, then centre-cropped to ``size x size``.
    With ``clips_per_file = 1`` a video gives its first clip (name: the file name); with more,
    each clip starts at a time drawn uniformly over the video from a seed made of the file name
    and the clip index (name: ``file@i``), so every run, and every model, gets the same clips.
    ``target_fps`` picks the frame stride as in training (``None``: every source frame).
    Hidden files are left out (``data.make_shards.media_files``). Videos shorter than the clip
    are skipped, and undecodable or oversized files (``data.decode.DEFAULT_MAX_PIXELS``) too,
    each named in a ``BadSampleWarning``; past the loader's failure fraction the run stops
    (``data.pipeline.skip_unreadable``).
    """
    if clips_per_file < 1:
        raise ValueError(f"clips_per_file must be >= 1, got {clips_per_file}")
    files = [
        path for path in media_files(folder)
        if path.suffix.lower().lstrip(".") in VIDEO_EXTENSIONS
        or (images and path.suffix.lower().lstrip(".") in IMAGE_EXTENSIONS)
    ]

    def read(path: Path) -> list[tuple[str, torch.Tensor]]:
        data = path.read_bytes()
        if path.suffix.lower().lstrip(".") in IMAGE_EXTENSIONS:
            frames = decode_image(data)[None]
            return [(path.name, frames_to_pixels(frames, size=(size, size), crop="center")[None])]
        clips = []
        for i in range(clips_per_file):
            clip = decode_clip(
                data,
                num_frames=num_frames,
                target_fps=target_fps,
                clip_start="start" if clips_per_file == 1 else "random",
                rng=random.Random(f"{path.name}@{i}"),
            )
            name = path.name if clips_per_file == 1 else f"{path.name}@{i}"
            clips.append((name, frames_to_pixels(clip.frames, size=(size, size), crop="center")[None]))
        return clips

    readable = skip_unreadable(files, read, name=str, what=f"media folder {folder}",
                               skip_quietly=(ShortClipError,))
    for _path, clips in readable:
        yield from clips


def shard_clips(
    shards: str, *, num_frames: int, size: int, images: bool, batch_size: int = 1
) -> Iterator[tuple[str, torch.Tensor]]:
    """(key, pixels (B, 3, T, H, W)) batches from shards (validation order, centre crops)."""
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
    source: str,
    *,
    num_frames: int,
    size: int,
    images: bool = False,
    batch_size: int = 1,
    clips_per_file: int = 1,
    target_fps: float | None = None,
) -> Iterator[tuple[str, torch.Tensor]]:
    """Clips from a folder of media or from shards (a path, brace pattern or list).

    ``clips_per_file`` and ``target_fps`` apply to a folder (see :func:`folder_clips`); shards
    give one centred clip per sample at the source rate.
    """
    path = Path(source)
    if path.is_dir():
        yield from folder_clips(
            path,
            num_frames=num_frames,
            size=size,
            images=images,
            clips_per_file=clips_per_file,
            target_fps=target_fps,
        )
    else:
        if clips_per_file != 1 or target_fps is not None:
            raise ValueError("clips_per_file and target_fps need a folder source, not shards")
        yield from shard_clips(
            source, num_frames=num_frames, size=size, images=images, batch_size=batch_size
        )
