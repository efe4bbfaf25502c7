"""Encode uint8 frames to an in-memory MP4 with PyAV (used by the shard writer and synthetic
data). H.264 (libx264) when PyAV's bundled FFmpeg has it, MPEG-4 Part 2 otherwise."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from einops import rearrange

from data.decode import _stream_fps, _video_stream, frame_to_rgb, ordered_frames
from data.transforms import frames_to_pixels


def default_codec() -> str:
    """``libx264`` if available, else ``mpeg4``."""
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def encode_video(
    frames: np.ndarray, *, fps: float, codec: str | None = None, quality: int = 18
) -> bytes:
    """``(T, H, W, 3)`` uint8 RGB frames to MP4 bytes.

    Args:
        frames: the frames; H and W must be even (4:2:0 chroma).
        fps: frame rate stored in the file.
        codec: FFmpeg encoder name (default: :func:`default_codec`).
        quality: x264 CRF (lower is better) or MPEG-4 qscale scaled from it.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(f"frame height and width must be even for yuv420p, got {frames.shape[1:3]}")
    codec = codec or default_codec()
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.height, stream.width = frames.shape[1], frames.shape[2]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            # One thread and a fixed preset keep the bytes identical run to run.
            stream.options = {"crf": str(quality), "preset": "veryfast", "threads": "1"}
        else:
            stream.codec_context.qscale = max(1, quality // 6)
            stream.options = {"threads": "1"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return buffer.getvalue()


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """One clip ``(3, T, H, W)`` in [-1, 1] -> ``(T, H, W, 3)`` uint8."""
    if video.ndim != 4 or video.shape[0] != 3:
        raise ValueError(f"expected a (3, T, H, W) video, got shape {tuple(video.shape)}")
    frames = ((video.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return rearrange(frames, "c t h w -> t h w c").cpu().numpy()


def write_mp4(frames: np.ndarray, path: str | Path, *, fps: float = 8.0) -> Path:
    """Write ``(T, H, W, 3)`` uint8 frames as an MP4 file; odd sides are edge-padded to even."""
    _, h, w, _ = frames.shape
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_video(frames, fps=fps))
    return path


def reencode_video(data: bytes, *, size: int, fps: float) -> bytes:
    """Re-encode a video to ``size x size`` (cover-resize, centre crop) at ``fps``."""
    out: list[np.ndarray] = []
    with av.open(io.BytesIO(data)) as container:
        stream = _video_stream(container)
        dt = 1.0 / _stream_fps(stream)
        next_time: float | None = None
        for time, frame in ordered_frames(container, stream, dt):
            next_time = time if next_time is None else next_time
            rgb = None
            # Keep the frame shown at each output tick (drops or repeats frames as needed).
            while time + 0.5 * dt >= next_time:
                rgb = rgb if rgb is not None else _square(frame_to_rgb(frame), size)
                out.append(rgb)
                next_time += 1.0 / fps
    if not out:
        raise ValueError("video has no decodable frames")
    return encode_video(np.stack(out), fps=fps)


def _square(rgb: np.ndarray, size: int) -> np.ndarray:
    pixels = frames_to_pixels(rgb[None], size=(size, size), crop="center")  # (3, 1, s, s)
    return ((pixels[:, 0].permute(1, 2, 0) + 1.0) * 127.5).round().to(torch.uint8).numpy()
