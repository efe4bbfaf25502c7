"""Reading the media to evaluate: folders of videos/images, or webdataset shards.

A *source* is a folder (searched recursively for the extensions in ``data.decode``) or a shard
path / brace pattern (``val-{000000..000003}.tar``). Every sample becomes a :class:`MediaItem`
named by its key: for a file, the key ``python -m data.make_shards`` gives it (its path relative
to the folder without the extension, other characters than letters, digits, ``_`` and ``-``
replaced by ``_``: ``a/b.mp4`` -> ``a_b``); for a shard sample, its ``__key__``. So a folder and
the shards made from it have the same keys, and keys pair generated videos with their ground
truth.

Decoding goes through ``data.decode`` (PyAV for videos, Pillow for images), the same code the
training pipeline uses, so frames are read identically everywhere.
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from webdataset.tariterators import tarfile_samples

from data.decode import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    _stream_fps,
    _video_stream,
    decode_clip,
    decode_image,
    frame_to_rgb,
    ordered_frames,
)
from data.encode import to_uint8_frames
from data.make_shards import media_files, sample_key
from data.pipeline import expand_urls
from data.samples import media_field
from data.transforms import frames_to_pixels

Kind = Literal["video", "image"]


@dataclass(frozen=True)
class MediaItem:
    """One encoded sample.

    Attributes:
        key: the sample key (see the module docstring).
        kind: "video" or "image".
        data: the encoded file.
    """

    key: str
    kind: Kind
    data: bytes


def is_folder(source: str | Path) -> bool:
    """True when ``source`` is a folder of media (otherwise it is read as shards)."""
    return Path(source).is_dir()


def folder_media(root: Path) -> list[Path]:
    """The media files of a folder, one per key: where several files share a key (``walt.generate``
    writes ``sample_000.mp4`` and its ``sample_000.gif`` preview), the GIF is left out, since a
    palette GIF is a lossy preview (and merges repeated frames); otherwise the first by path."""
    chosen: dict[str, Path] = {}
    for path in media_files(root):
        key = sample_key(path.relative_to(root).as_posix())
        kept = chosen.get(key)
        if kept is None or (kept.suffix.lower() == ".gif" and path.suffix.lower() != ".gif"):
            chosen[key] = path
    return sorted(chosen.values())


def count_media(source: str | Path) -> int | None:
    """Number of media items in a folder (for progress bars); ``None`` for shards."""
    return len(folder_media(Path(source))) if is_folder(source) else None


def iter_media(source: str | Path, *, name: str = "source") -> Iterator[MediaItem]:
    """Every video and image of a folder (sorted by path, one file per key: see
    :func:`folder_media`) or of shards (in shard order).

    Args:
        source: a folder, or a shard path / brace pattern.
        name: the argument name, for error messages.
    """
    if is_folder(source):
        root = Path(source)
        files = folder_media(root)
        if not files:
            raise ValueError(
                f"{name}: no videos or images in the folder {root} (for shards pass their path or "
                "brace pattern, e.g. 'val-{000000..000003}.tar')"
            )
        for path in files:
            ext = path.suffix.lower().lstrip(".")
            kind: Kind = "video" if ext in VIDEO_EXTENSIONS else "image"
            key = sample_key(path.relative_to(root).as_posix())
            yield MediaItem(key=key, kind=kind, data=path.read_bytes())
        return
    urls = expand_urls(str(source), name=name)
    for sample in tarfile_samples({"url": url} for url in urls):
        video = media_field(sample, VIDEO_EXTENSIONS)
        image = media_field(sample, IMAGE_EXTENSIONS)
        if video is not None:
            yield MediaItem(key=sample["__key__"], kind="video", data=sample[video])
        elif image is not None:
            yield MediaItem(key=sample["__key__"], kind="image", data=sample[image])


def read_frames(item: MediaItem, *, max_frames: int | None = None) -> np.ndarray:
    """All frames of an item (or the first ``max_frames``) as ``(T, H, W, 3)`` uint8.

    An image is one frame. Frames come in presentation order with the display rotation applied.
    """
    if item.kind == "image":
        return decode_image(item.data)[None]
    frames: list[np.ndarray] = []
    with av.open(io.BytesIO(item.data)) as container:
        stream = _video_stream(container)
        reformatter = VideoReformatter()
        for _, frame in ordered_frames(container, stream, 1.0 / _stream_fps(stream)):
            frames.append(frame_to_rgb(frame, reformatter=reformatter))
            if max_frames is not None and len(frames) >= max_frames:
                break
    if not frames:
        raise ValueError(f"{item.key}: the video has no decodable frames")
    return np.stack(frames)


def read_clip(
    item: MediaItem, *, num_frames: int, random_start: bool, rng: random.Random
) -> np.ndarray:
    """``num_frames`` consecutive frames ``(T, H, W, 3)`` uint8, from the first frame or from a
    random start drawn from ``rng``. Raises ``data.decode.ShortClipError`` for shorter videos."""
    clip = decode_clip(
        item.data,
        num_frames=num_frames,
        frame_stride=1,
        clip_start="random" if random_start else "start",
        short_clip="skip",
        rng=rng,
    )
    return clip.frames


def resize_frames(frames: np.ndarray, size: int | None) -> np.ndarray:
    """Cover-resize and centre-crop ``(T, H, W, 3)`` uint8 frames to ``size x size`` (the data
    pipeline's transform); ``size=None`` keeps them as they are."""
    if size is None:
        return frames
    return to_uint8_frames(frames_to_pixels(frames, size=(size, size), crop="center"))
