"""Reading the media to evaluate: folders of videos/images, or webdataset shards.

A *source* is a folder (searched recursively for the extensions in ``data.decode``) or a shard
path / brace pattern (``val-{000000..000003}.tar``). Every sample becomes a :class:`MediaItem`
named by its key: for a file, the key ``python -m data.make_shards`` gives it (its path relative
to the folder without the extension, other characters than letters, digits, ``_`` and ``-``
replaced by ``_``: ``a/b.mp4`` -> ``a_b``); for a shard sample, its ``__key__``. So a folder and
the shards made from it have the same keys, and keys pair generated videos with their ground
truth.

Decoding goes through ``data.decode`` (PyAV for videos, Pillow for images), the same code the
training pipeline uses, so frames are read identically everywhere, under the same pixel cap
(``data.decode.DEFAULT_MAX_PIXELS``). Hidden files are never read (the temporaries of an
interrupted write are hidden), and a folder that a generation run wrote (it holds
``clips.json``) must hold only that run's clips.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from webdataset.tariterators import tarfile_samples

from data.decode import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    _stream_fps,
    decode_clip,
    decode_image,
    frame_to_rgb,
    naming_file,
    open_video_stream,
    ordered_frames,
)
from data.encode import to_uint8_frames
from data.make_shards import media_files, sample_key
from data.pipeline import FailureGuard, expand_urls, skip_unreadable
from data.samples import media_field
from data.transforms import frames_to_pixels
from walt.pipelines.outputs import CLIP_FILE, MANIFEST, RUN_FILE

Kind = Literal["video", "image"]


@dataclass(frozen=True)
class MediaItem:
    """One encoded sample.

    Attributes:
        key: the sample key (see the module docstring).
        kind: "video" or "image".
        data: the encoded file.
        origin: where it was read, for messages: the file, or the shard and key (default: the
            key).
    """

    key: str
    kind: Kind
    data: bytes
    origin: str = ""

    @property
    def name(self) -> str:
        """The item's origin for messages."""
        return self.origin or self.key


class StaleRunFileError(ValueError):
    """A generated folder holds a clip file its run did not write (an earlier run's)."""


def is_folder(source: str | Path) -> bool:
    """True when ``source`` is a folder of media (otherwise it is read as shards)."""
    return Path(source).is_dir()


def folder_media(root: Path) -> list[Path]:
    """The media files of a folder, one per key: where several files share a key (``walt.generate``
    writes ``sample_000.mp4`` and its ``sample_000.gif`` preview), the GIF is left out, since a
    palette GIF is a lossy preview (and merges repeated frames); otherwise the first by path."""
    files = run_clips(root, media_files(root))
    chosen: dict[str, Path] = {}
    for path in files:
        key = sample_key(path.relative_to(root).as_posix())
        kept = chosen.get(key)
        if kept is None or (kept.suffix.lower() == ".gif" and path.suffix.lower() != ".gif"):
            chosen[key] = path
    return sorted(chosen.values())


def run_clips(root: Path, files: list[Path]) -> list[Path]:
    """``files`` of a folder, checked when it is a generated run's (it holds ``clips.json``):
    its clip-named files (``sample_XXX.mp4`` ...) must all be in that list, or they are an
    earlier run's and are refused (they would be scored as this run's); the run's contact
    sheets are left out (they are not samples)."""
    manifest = root / MANIFEST
    if not manifest.is_file():
        return files
    try:
        listed = set(json.loads(manifest.read_text())["files"])
    except (ValueError, KeyError, TypeError) as error:
        raise StaleRunFileError(f"{manifest}: unreadable clip list ({error!r})") from None
    relative = [path.relative_to(root).as_posix() for path in files]
    stale = [name for name in relative if CLIP_FILE.fullmatch(name) and name not in listed]
    if stale:
        shown = ", ".join(stale[:4]) + (f" and {len(stale) - 4} more" if len(stale) > 4 else "")
        raise StaleRunFileError(
            f"{root} holds {shown}, which its run did not write ({MANIFEST}): files of an earlier "
            "run; regenerate with --overwrite or remove them"
        )
    return [p for p, name in zip(files, relative) if CLIP_FILE.fullmatch(name)
            or not RUN_FILE.fullmatch(name)]


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
            yield MediaItem(key=key, kind=kind, data=path.read_bytes(), origin=str(path))
        return
    urls = expand_urls(str(source), name=name)
    for sample in tarfile_samples({"url": url} for url in urls):
        video = media_field(sample, VIDEO_EXTENSIONS)
        image = media_field(sample, IMAGE_EXTENSIONS)
        field = video or image
        if field is not None:
            yield MediaItem(key=sample["__key__"], kind="video" if video else "image",
                            data=sample[field],
                            origin=f"sample {sample['__key__']!r} in shard {sample.get('__url__')}")


Decoded = TypeVar("Decoded")


def readable_media(
    items: Iterable[MediaItem],
    read: Callable[[MediaItem], Decoded],
    *,
    what: str,
    skip_quietly: tuple[type[Exception], ...] = (),
    guard: FailureGuard | None = None,
) -> Iterator[tuple[MediaItem, Decoded]]:
    """``(item, read(item))`` for the items that decode; an undecodable one is skipped and
    named in a warning, and the run stops past the loader's failure fraction
    (``data.pipeline.skip_unreadable``).

    Args:
        items: the media to read.
        read: decodes one item.
        what: the tool and source, for the guard's message.
        skip_quietly: exceptions that skip an item without counting it as bad (a video
            shorter than the clip, ``data.decode.ShortClipError``).
        guard: a failure guard shared by several calls (one per pair of files); default: one
            for this call.
    """
    return skip_unreadable(items, read, name=lambda item: item.name, what=what,
                           skip_quietly=skip_quietly, guard=guard)


def read_frames(item: MediaItem, *, max_frames: int | None = None) -> np.ndarray:
    """All frames of an item (or the first ``max_frames``) as ``(T, H, W, 3)`` uint8.

    An image is one frame. Frames come in presentation order with the display rotation applied.
    Media over ``data.decode.DEFAULT_MAX_PIXELS`` per frame are refused before decoding
    (:class:`data.decode.MediaTooLargeError`, naming the file).
    """
    with naming_file(item.name):
        if item.kind == "image":
            return decode_image(item.data)[None]
        frames: list[np.ndarray] = []
        with av.open(io.BytesIO(item.data)) as container:
            stream = open_video_stream(container, max_pixels=DEFAULT_MAX_PIXELS)
            reformatter = VideoReformatter()
            for _, frame in ordered_frames(container, stream, 1.0 / _stream_fps(stream)):
                frames.append(frame_to_rgb(frame, reformatter=reformatter))
                if max_frames is not None and len(frames) >= max_frames:
                    break
    if not frames:
        raise ValueError(f"{item.name}: the video has no decodable frames")
    return np.stack(frames)


def read_clip(
    item: MediaItem, *, num_frames: int, random_start: bool, rng: random.Random
) -> np.ndarray:
    """``num_frames`` consecutive frames ``(T, H, W, 3)`` uint8, from the first frame or from a
    random start drawn from ``rng``. Raises ``data.decode.ShortClipError`` for shorter videos
    and ``data.decode.MediaTooLargeError`` (naming the file) over the pixel cap."""
    with naming_file(item.name):
        clip = decode_clip(
            item.data,
            num_frames=num_frames,
            frame_stride=1,
            clip_start="random" if random_start else "start",
            short_clip="skip",
            rng=rng,
            max_pixels=DEFAULT_MAX_PIXELS,
        )
    return clip.frames


def resize_frames(frames: np.ndarray, size: int | None) -> np.ndarray:
    """Cover-resize and centre-crop ``(T, H, W, 3)`` uint8 frames to ``size x size`` (the data
    pipeline's transform); ``size=None`` keeps them as they are."""
    if size is None:
        return frames
    return to_uint8_frames(frames_to_pixels(frames, size=(size, size), crop="center"))
