"""Decode shard members (bytes) into uint8 frames with PyAV (videos) and Pillow (images).

A clip is ``num_frames`` frames spaced ``stride`` source frames apart. Instead of decoding the
whole file, we seek to the keyframe before the clip start and decode forward only until the
last frame of the clip, which is what makes loading long videos cheap.

Frames are picked by timestamp, not by counting, so containers without a frame count (WebM,
Matroska) and streams whose first timestamp is not zero work the same way: target time
``t_i = t_0 + i * stride / fps`` takes the first decoded frame whose time is at or after
``t_i - 0.5 / fps``.
"""

from __future__ import annotations

import contextlib
import heapq
import io
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image, ImageOps

# The one list of media extensions (shard fields and file suffixes, lower case, no dot).
VIDEO_EXTENSIONS: tuple[str, ...] = ("mp4", "webm", "mkv", "avi", "mov", "gif")
IMAGE_EXTENSIONS: tuple[str, ...] = ("jpg", "jpeg", "png", "webp", "bmp")
# Decoded pixels per frame above which a file is refused before decoding: a 50 KB file can
# claim 4096x4096 (or 65535x65535) frames and take gigabytes to decode. 4096^2 admits 4K video.
DEFAULT_MAX_PIXELS = 4096 * 4096
# Transparent pixels are composited on white (the usual page background of web images).
ALPHA_BACKGROUND: tuple[int, int, int] = (255, 255, 255)
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")

ClipStart = Literal["random", "center", "start"]
ShortClip = Literal["skip", "loop"]
_REORDER_DEPTH = 4  # frames held back to restore presentation order


class ShortClipError(ValueError):
    """The video has fewer frames than the clip needs and ``short_clip="skip"``."""


class MediaTooLargeError(ValueError):
    """The file's header claims more pixels per frame than ``max_pixels`` allows."""


def check_pixels(width: int, height: int, *, max_pixels: int | None) -> None:
    """Raise :class:`MediaTooLargeError` when ``width x height`` exceeds ``max_pixels``.

    Args:
        width: frame width from the file header.
        height: frame height from the file header.
        max_pixels: the cap; ``None`` disables it.
    """
    if max_pixels is not None and width * height > max_pixels:
        raise MediaTooLargeError(
            f"frame size {width}x{height} ({width * height} pixels) is over "
            f"max_pixels={max_pixels}; not decoded"
        )


@contextlib.contextmanager
def naming_file(name: str) -> Iterator[None]:
    """Re-raise the pixel cap's refusal (:class:`MediaTooLargeError`) with ``name`` (the file)
    in its message, for readers of files: the decoders see only bytes."""
    try:
        yield
    except MediaTooLargeError as error:
        raise MediaTooLargeError(f"{name}: {error}") from error


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about its first video stream.

    Attributes:
        fps: average frame rate of the stream.
        num_frames: frame count from the header, ``None`` when the container has none.
        duration: duration in seconds, ``None`` when unknown.
        width: displayed width (after rotation).
        height: displayed height (after rotation).
        rotation: counter-clockwise rotation in degrees from the display matrix.
    """

    fps: float
    num_frames: int | None
    duration: float | None
    width: int
    height: int
    rotation: int


@dataclass(frozen=True)
class Clip:
    """A decoded clip.

    Attributes:
        frames: ``(T, H, W, 3)`` uint8 RGB, rotation already applied.
        fps: effective frame rate, ``source_fps / stride``.
        stride: spacing in source frames between consecutive clip frames.
        source_fps: the stream's average frame rate.
        times: presentation time in seconds of each returned frame.
        looped: True when the video was shorter than the clip and frames wrapped around.
    """

    frames: np.ndarray
    fps: float
    stride: int
    source_fps: float
    times: tuple[float, ...]
    looped: bool


def choose_stride(source_fps: float, *, frame_stride: int | None, target_fps: float | None) -> int:
    """Frame stride from either a fixed stride or a target frame rate (exactly one may be set).

    With ``target_fps`` the stride is the integer closest to ``source_fps / target_fps`` (at least
    1), so the effective rate ``source_fps / stride`` is as close as an integer stride allows.
    """
    if frame_stride is not None and target_fps is not None:
        raise ValueError("set only one of frame_stride and target_fps, not both")
    if frame_stride is not None:
        if frame_stride < 1:
            raise ValueError(f"frame_stride must be >= 1, got {frame_stride}")
        return frame_stride
    if target_fps is not None:
        if target_fps <= 0:
            raise ValueError(f"target_fps must be > 0, got {target_fps}")
        return max(1, round(source_fps / target_fps))
    return 1


def probe_video(data: bytes, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> VideoInfo:
    """Read the header of a video (and its first frame, for the rotation).

    Args:
        data: the encoded file.
        max_pixels: refuse (:class:`MediaTooLargeError`) a header claiming more pixels per
            frame, before anything is decoded; ``None`` disables the cap.
    """
    with av.open(io.BytesIO(data)) as container:
        stream = open_video_stream(container, max_pixels=max_pixels)
        fps = _stream_fps(stream)
        duration = _stream_duration(container, stream)
        first = next(container.decode(stream), None)
        if first is None:
            raise ValueError("video stream has no decodable frames")
        rotation = _rotation(first)
        width, height = stream.codec_context.width, stream.codec_context.height
        if rotation % 180:
            width, height = height, width
        count = stream.frames if stream.frames and stream.frames > 0 else None
        return VideoInfo(fps, count, duration, width, height, rotation)


def decode_clip(
    data: bytes,
    *,
    num_frames: int,
    frame_stride: int | None = None,
    target_fps: float | None = None,
    clip_start: ClipStart = "random",
    short_clip: ShortClip = "skip",
    rng: random.Random | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> Clip:
    """Decode ``num_frames`` frames of the first video stream of ``data``.

    Args:
        data: the encoded file (a shard member).
        num_frames: frames in the clip.
        frame_stride: fixed spacing in source frames (exclusive with ``target_fps``).
        target_fps: wanted frame rate; the stride is rounded to an integer.
        clip_start: "random" (training), "center" or "start" (deterministic).
        short_clip: "skip" raises :class:`ShortClipError` when the video is too short;
            "loop" wraps around to the first frame.
        rng: random source for ``clip_start="random"``.
        max_pixels: refuse (:class:`MediaTooLargeError`) a stream whose header claims more
            pixels per frame, before decoding; ``None`` disables the cap.
    """
    rng = rng if rng is not None else random.Random()
    with av.open(io.BytesIO(data)) as container:
        stream = open_video_stream(container, max_pixels=max_pixels)
        source_fps = _stream_fps(stream)
        stride = choose_stride(source_fps, frame_stride=frame_stride, target_fps=target_fps)
        dt = 1.0 / source_fps
        origin = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        duration = _stream_duration(container, stream)
        span = (num_frames - 1) * stride * dt
        if duration is not None and duration - span >= dt:
            # The last usable start leaves a whole frame interval for the last frame.
            offset = _pick_offset(duration - span - dt, clip_start, rng)
            targets = [origin + offset + i * stride * dt for i in range(num_frames)]
            picked = _decode_targets(container, stream, targets, dt, seek=offset > 0)
            if picked == "bad seek":
                # Some files decode garbage after a seek (flagged corrupt): go from the top.
                container.seek(0)
                picked = _decode_targets(container, stream, targets, dt, seek=False)
            if isinstance(picked, tuple):
                times, frames = picked
                return Clip(np.stack(frames), source_fps / stride, stride, source_fps, times, False)
        # Unknown or wrong duration, or the clip does not fit: list every frame time first.
        container.seek(0)
        all_times = [time for time, _ in ordered_frames(container, stream, dt)]
        if not all_times:
            raise ValueError("video stream has no decodable frames")
        indices, looped = _clip_indices(
            len(all_times), num_frames, stride, clip_start, short_clip, rng
        )
        container.seek(0)
        times, frames = _decode_at(container, stream, dt, [all_times[i] for i in indices])
    return Clip(np.stack(frames), source_fps / stride, stride, source_fps, times, looped)


def image_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` of an image from its header only (no pixel data is decoded)."""
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def decode_image(data: bytes, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an image to ``(H, W, 3)`` uint8 RGB, applying its EXIF orientation.

    Args:
        data: the encoded file.
        max_pixels: refuse (:class:`MediaTooLargeError`) an image whose header claims more
            pixels, before decoding; ``None`` disables the cap.
    """
    with Image.open(io.BytesIO(data)) as image:
        check_pixels(*image.size, max_pixels=max_pixels)  # header only: nothing decoded yet
        return image_to_rgb(ImageOps.exif_transpose(image))


def image_to_rgb(image: Image.Image) -> np.ndarray:
    """Any Pillow image mode to ``(H, W, 3)`` uint8 RGB.

    16-bit and 32-bit integer greyscale (``I;16*``, ``I``: values taken as 0..65535) are scaled
    to 0..255 (``Image.convert`` would clip them to 0 and 255). Images with an alpha channel or a
    transparent palette entry / colour key are composited on :data:`ALPHA_BACKGROUND`. Palette,
    1-bit, greyscale, CMYK and YCbCr go through Pillow's own conversion.
    """
    if image.mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image).astype(np.float64)  # (H, W)
        grey = np.clip(np.round(values / 257.0), 0, 255).astype(np.uint8)  # 65535 / 255 = 257
        return np.repeat(grey[..., None], 3, axis=-1)
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        return composite_alpha(np.asarray(image.convert("RGBA")))
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def composite_alpha(rgba: np.ndarray) -> np.ndarray:
    """``(H, W, 4)`` uint8 RGBA over :data:`ALPHA_BACKGROUND` -> ``(H, W, 3)`` uint8 RGB."""
    values = rgba.astype(np.float64)
    alpha = values[..., 3:] / 255.0
    background = np.asarray(ALPHA_BACKGROUND, dtype=np.float64)
    return np.round(values[..., :3] * alpha + background * (1.0 - alpha)).astype(np.uint8)


def frame_to_rgb(frame: av.VideoFrame, *, reformatter: VideoReformatter | None = None) -> np.ndarray:
    """One decoded frame as ``(H, W, 3)`` uint8 RGB with its display rotation applied.

    Frames with an alpha channel (transparent GIFs decode to BGRA) are composited on
    :data:`ALPHA_BACKGROUND`, as images are. Pass one ``reformatter`` for all the frames of a
    stream: it keeps its colour-conversion context, which otherwise is rebuilt for every frame
    (about 60% of the decode time of a small clip); the pixels are the same.
    """
    reformatter = reformatter or VideoReformatter()
    # One thread: by default FFmpeg starts a pool of conversion threads with every conversion
    # context, which cost more than converting a small frame (32x32 training clips loaded
    # 1.8x faster without them), and loader workers are the parallelism that data loading uses.
    alpha = any(component.is_alpha for component in frame.format.components)
    converted = reformatter.reformat(frame, format="rgba" if alpha else "rgb24", threads=1)
    rgb = composite_alpha(converted.to_ndarray()) if alpha else converted.to_ndarray()
    turns = (_rotation(frame) // 90) % 4
    # np.rot90 turns counter-clockwise, the same sense as the display-matrix angle.
    return np.ascontiguousarray(np.rot90(rgb, k=turns)) if turns else rgb


def open_video_stream(
    container: av.container.InputContainer, *, max_pixels: int | None
) -> av.VideoStream:
    """The first video stream with its decoder opened under the ``max_pixels`` cap: every
    reader of video files opens its stream here, so the cap holds in every decoder.

    The container header is checked first (a clear error, nothing decoded). A header can
    disagree with the bitstream, so FFmpeg's decoder also gets a backstop ``max_pixels`` option
    and refuses far larger frames instead of allocating them. The backstop is 4x the cap
    because FFmpeg counts the width padded to its stride alignment (up to 64 pixels).
    """
    stream = _video_stream(container)
    context = stream.codec_context
    check_pixels(context.width, context.height, max_pixels=max_pixels)
    # One decoding thread: FFmpeg's default starts a thread pool per opened file, which costs
    # more than decoding a small training clip (32x32 clips loaded 1.4x faster without it) and
    # saves little on large ones (2% at 17x256x256 from real files); the loader's worker
    # processes are its parallelism, and threads of their own would compete with training.
    context.thread_count = 1
    if max_pixels is not None:
        backstop = str(min(4 * max_pixels, 2**31 - 1))
        context.options = {**(context.options or {}), "max_pixels": backstop}
        try:
            context.open(strict=False)
        except av.error.FFmpegError as error:
            raise MediaTooLargeError(
                f"the decoder refused the stream under max_pixels={max_pixels} (frame size over "
                f"the cap, or a broken stream): {error}"
            ) from error
    return stream


def _video_stream(container: av.container.InputContainer) -> av.VideoStream:
    if not container.streams.video:
        raise ValueError("file has no video stream")
    return container.streams.video[0]


def _stream_fps(stream: av.VideoStream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or float(rate) <= 0:
        raise ValueError("video stream has no frame rate")
    return float(rate)


def _stream_duration(container: av.container.InputContainer, stream: av.VideoStream) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    if stream.frames:
        return stream.frames / _stream_fps(stream)
    return None


def _rotation(frame: av.VideoFrame) -> int:
    return int(round(getattr(frame, "rotation", 0) or 0))


def _pick_offset(latest: float, clip_start: ClipStart, rng: random.Random) -> float:
    if clip_start == "random":
        return rng.uniform(0.0, latest)
    if clip_start == "center":
        return latest / 2
    if clip_start == "start":
        return 0.0
    raise ValueError(f"clip_start must be 'random', 'center' or 'start', got {clip_start!r}")


def _frame_time(frame: av.VideoFrame, index: int, dt: float) -> float:
    if frame.pts is None or frame.time is None:
        return index * dt
    return float(frame.time)


def ordered_frames(
    container: av.container.InputContainer, stream: av.VideoStream, dt: float
) -> Iterator[tuple[float, av.VideoFrame]]:
    """Decoded frames in presentation order.

    Some files (MPEG-4 ASP with packed B-frames in AVI) hand out frames slightly out of
    timestamp order, so a small reorder buffer sorts them.
    """
    heap: list[tuple[float, int, av.VideoFrame]] = []
    for index, frame in enumerate(container.decode(stream)):
        heapq.heappush(heap, (_frame_time(frame, index, dt), index, frame))
        if len(heap) > _REORDER_DEPTH:
            time, _, oldest = heapq.heappop(heap)
            yield time, oldest
    while heap:
        time, _, oldest = heapq.heappop(heap)
        yield time, oldest


def _decode_targets(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    targets: list[float],
    dt: float,
    *,
    seek: bool,
) -> tuple[tuple[float, ...], list[np.ndarray]] | Literal["bad seek", "too short"]:
    """Seek before ``targets[0]`` and decode forward to pick the frames at ``targets``.

    Returns the times and frames, "bad seek" when the seek overshot or decoding after it is
    flagged corrupt, or "too short" when the stream ends before the last target.
    """
    tolerance = 0.5 * dt
    step = targets[1] - targets[0] if len(targets) > 1 else 0.0
    if seek:
        try:
            container.seek(int(targets[0] / stream.time_base), stream=stream, backward=True)
        except av.error.FFmpegError:
            container.seek(0)
    times: list[float] = []
    frames: list[np.ndarray] = []
    reformatter = VideoReformatter()
    for index, (time, frame) in enumerate(ordered_frames(container, stream, dt)):
        if seek and (frame.is_corrupt or (index == 0 and time > targets[0] + tolerance)):
            return "bad seek"
        rgb = None
        while len(frames) < len(targets) and time >= targets[len(frames)] - tolerance:
            rgb = frame_to_rgb(frame, reformatter=reformatter) if rgb is None else rgb
            if not frames:
                # Later targets are spaced from the frame actually picked, so rounded
                # timestamps (1 ms in WebM) cannot make the spacing uneven.
                targets = [time + i * step for i in range(len(targets))]
            times.append(time)
            frames.append(rgb)
        if len(frames) == len(targets):
            return tuple(times), frames
    return "too short"


def _decode_at(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    dt: float,
    times: list[float],
) -> tuple[tuple[float, ...], list[np.ndarray]]:
    """Decode from the top and keep the frames at exactly ``times`` (repeats allowed)."""
    wanted = set(times)
    found: dict[float, np.ndarray] = {}
    reformatter = VideoReformatter()
    for time, frame in ordered_frames(container, stream, dt):
        if time in wanted:
            found[time] = frame_to_rgb(frame, reformatter=reformatter)
            if len(found) == len(wanted):
                break
    return tuple(times), [found[time] for time in times]


def _clip_indices(
    available: int,
    num_frames: int,
    stride: int,
    clip_start: ClipStart,
    short_clip: ShortClip,
    rng: random.Random,
) -> tuple[list[int], bool]:
    """Frame indices of the clip in a video of ``available`` frames, and whether it loops."""
    needed = (num_frames - 1) * stride + 1
    looped = available < needed
    if looped and short_clip == "skip":
        raise ShortClipError(
            f"video has {available} frames but the clip needs {needed} "
            f"({num_frames} frames at stride {stride}); set short_clip='loop' to wrap around"
        )
    if looped and short_clip != "loop":
        raise ValueError(f"short_clip must be 'skip' or 'loop', got {short_clip!r}")
    latest = max(available - needed, 0)
    first = min(math.floor(_pick_offset(latest + 0.999, clip_start, rng)), latest)
    return [(first + i * stride) % available for i in range(num_frames)], looped
