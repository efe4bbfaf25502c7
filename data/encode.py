"""Encode uint8 frames to an in-memory MP4 with PyAV (used by the shard writer and synthetic
data). H.264 (libx264) when PyAV's bundled FFmpeg has it, MPEG-4 Part 2 otherwise."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter
from einops import rearrange

from common.atomic import atomic_open
from data.decode import (
    DEFAULT_MAX_PIXELS,
    _stream_fps,
    frame_to_rgb,
    open_video_stream,
    ordered_frames,
)
from data.transforms import frames_to_pixels

# Keyframe spacing of re-encoded training videos. A clip that starts at a random time decodes
# from the keyframe before it: with x264's default (up to 250 frames, half a minute at 8 fps)
# that is most of a long file; with 2 s, at most 15 frames at 8 fps. On the short files of the
# loader benchmark it cut the frames decoded per 17-frame clip from 35 to 25, for shards 3-15%
# larger.
REENCODE_KEYFRAME_SECONDS = 2.0


def default_codec() -> str:
    """``libx264`` if available, else ``mpeg4``."""
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


class Mp4Writer:
    """The project's one MP4 encoder: frames go in one batch at a time, so a long clip is never
    held whole in memory. Use as a context manager; leaving it flushes the encoder.

    Args:
        target: a binary file object (an ``io.BytesIO``, or a handle from ``common.atomic``).
        height, width: frame size; both must be even (4:2:0 chroma).
        fps: frame rate stored in the file.
        codec: FFmpeg encoder name (default: :func:`default_codec`).
        quality: x264 CRF (lower is better) or MPEG-4 qscale scaled from it.
        keyframe_interval: at most this many frames from one keyframe to the next (``None``:
            the encoder's default, 250 for x264). A clip that starts at a random time is
            decoded from the keyframe before it, so training shards want them close.
    """

    def __init__(
        self, target, *, height: int, width: int, fps: float, codec: str | None = None,
        quality: int = 18, keyframe_interval: int | None = None,
    ) -> None:
        if height % 2 or width % 2:
            raise ValueError(f"frame height and width must be even for yuv420p, got {(height, width)}")
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if keyframe_interval is not None and keyframe_interval < 1:
            raise ValueError(f"keyframe_interval must be >= 1, got {keyframe_interval}")
        codec = codec or default_codec()
        self.size = (height, width)
        self.container = av.open(target, mode="w", format="mp4")
        self.stream = self.container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        self.stream.height, self.stream.width = height, width
        self.stream.pix_fmt = "yuv420p"
        # Single-threaded from the start: PyAV opens encoders with thread_count=0 (auto) and
        # slice threading unless told otherwise before the codec opens.
        self.stream.codec_context.thread_count = 1
        self.stream.codec_context.thread_type = 0
        if keyframe_interval is not None:
            self.stream.codec_context.gop_size = keyframe_interval
        if codec == "libx264":
            # One thread, a fixed preset and no macroblock-tree rate control keep the bytes
            # identical run to run. With mbtree on, the same frames and options gave one of two
            # different streams now and then (about 1 encode in 100, more under CPU load; QPs,
            # hence decoded pixels, differ by up to 25/255), even single-threaded.
            self.stream.options = {"crf": str(quality), "preset": "veryfast", "threads": "1",
                                   "x264-params": "mbtree=0"}
        else:
            self.stream.codec_context.qscale = max(1, quality // 6)
            self.stream.options = {"threads": "1"}
        self.frames_written = 0

    def write(self, frames: np.ndarray) -> None:
        """Append ``(T, H, W, 3)`` uint8 RGB frames."""
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
        if tuple(frames.shape[1:3]) != self.size:
            raise ValueError(f"frames must be {self.size}, got {tuple(frames.shape[1:3])}")
        for frame in frames:
            self.container.mux(self.stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        self.frames_written += len(frames)

    def close(self) -> None:
        self.container.mux(self.stream.encode())
        self.container.close()

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.container.close()


def encode_video(
    frames: np.ndarray, *, fps: float, codec: str | None = None, quality: int = 18,
    keyframe_interval: int | None = None,
) -> bytes:
    """``(T, H, W, 3)`` uint8 RGB frames to MP4 bytes (see :class:`Mp4Writer`)."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    buffer = io.BytesIO()
    with Mp4Writer(buffer, height=frames.shape[1], width=frames.shape[2], fps=fps, codec=codec,
                   quality=quality, keyframe_interval=keyframe_interval) as writer:
        writer.write(frames)
    return buffer.getvalue()


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """One clip ``(3, T, H, W)`` in [-1, 1] -> ``(T, H, W, 3)`` uint8."""
    if video.ndim != 4 or video.shape[0] != 3:
        raise ValueError(f"expected a (3, T, H, W) video, got shape {tuple(video.shape)}")
    frames = ((video.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return rearrange(frames, "c t h w -> t h w c").cpu().numpy()


def write_mp4(frames: np.ndarray, path: str | Path, *, fps: float = 8.0) -> Path:
    """Write ``(T, H, W, 3)`` uint8 frames as an MP4 file; odd sides are edge-padded to even."""
    with open_mp4(path, height=frames.shape[1], width=frames.shape[2], fps=fps) as write:
        write(frames)
    return Path(path)


@contextmanager
def open_mp4(path: str | Path, *, height: int, width: int, fps: float = 8.0) -> Iterator:
    """Stream frames into an MP4 file, written atomically (``common.atomic``): yields
    ``write(frames)`` taking ``(T, H, W, 3)`` uint8 batches; odd sides are edge-padded to even."""
    ph, pw = height % 2, width % 2

    def write(frames: np.ndarray) -> None:
        writer.write(np.pad(frames, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge"))

    with atomic_open(Path(path), "wb") as handle, Mp4Writer(
        handle, height=height + ph, width=width + pw, fps=fps
    ) as writer:
        yield write


def reencode_video(
    data: bytes, *, size: int, fps: float, keep_aspect: bool = False,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> bytes:
    """Re-encode a video to ``size x size`` (cover-resize, centre crop) at ``fps``; with
    ``keep_aspect``, resize so the short side is ``size`` and keep the whole frame (the long
    side rounded to even), so training crops can still move across it. A video over
    ``max_pixels`` per frame is refused (``data.decode.MediaTooLargeError``)."""
    out: list[np.ndarray] = []
    with av.open(io.BytesIO(data)) as container:
        stream = open_video_stream(container, max_pixels=max_pixels)
        dt = 1.0 / _stream_fps(stream)
        next_time: float | None = None
        reformatter = VideoReformatter()
        for time, frame in ordered_frames(container, stream, dt):
            next_time = time if next_time is None else next_time
            rgb = None
            # Keep the frame shown at each output tick (drops or repeats frames as needed).
            while time + 0.5 * dt >= next_time:
                rgb = rgb if rgb is not None else _resize(
                    frame_to_rgb(frame, reformatter=reformatter), size, keep_aspect)
                out.append(rgb)
                next_time += 1.0 / fps
    if not out:
        raise ValueError("video has no decodable frames")
    interval = max(1, round(REENCODE_KEYFRAME_SECONDS * fps))
    return encode_video(np.stack(out), fps=fps, keyframe_interval=interval)


def _resize(rgb: np.ndarray, size: int, keep_aspect: bool) -> np.ndarray:
    out = (size, size)
    if keep_aspect:
        h, w = rgb.shape[:2]
        long = 2 * round(max(h, w) * size / min(h, w) / 2)
        out = (size, long) if h <= w else (long, size)
    pixels = frames_to_pixels(rgb[None], size=out, crop="center")  # (3, 1, H, W)
    return ((pixels[:, 0].permute(1, 2, 0) + 1.0) * 127.5).round().to(torch.uint8).numpy()
