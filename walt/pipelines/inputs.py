"""Conditioning media and prompts for generation: images, videos and text embeddings from local
files, as pixels ``(1, C, T, H, W)`` in [-1, 1] and ``(N, L, E)`` embeddings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter
from safetensors.torch import load_file
from torch import Tensor

from data.decode import (
    DEFAULT_MAX_PIXELS,
    decode_clip,
    decode_image,
    frame_to_rgb,
    naming_file,
    open_video_stream,
    probe_video,
)
from data.transforms import frames_to_pixels

# Every reader here decodes under the data pipeline's pixel cap (data.decode.DEFAULT_MAX_PIXELS)
# and names the file when the cap refuses it.


def load_image(path: str | Path, *, size: tuple[int, int]) -> Tensor:
    """One image as a 1-frame clip ``(1, C, 1, H, W)`` (cover-resized, centre-cropped)."""
    with naming_file(str(path)):
        rgb = decode_image(Path(path).read_bytes(), max_pixels=DEFAULT_MAX_PIXELS)  # (H0, W0, 3)
    return frames_to_pixels(rgb[None], size=size, crop="center")[None]  # (1, 3, 1, H, W)


def load_video(path: str | Path, *, num_frames: int, size: tuple[int, int]) -> Tensor:
    """The first ``num_frames`` frames of a video ``(1, C, T, H, W)``; too short a video raises."""
    with naming_file(str(path)):
        clip = decode_clip(Path(path).read_bytes(), num_frames=num_frames, clip_start="start",
                           short_clip="skip", max_pixels=DEFAULT_MAX_PIXELS)
    return frames_to_pixels(clip.frames, size=size, crop="center")[None]  # (1, 3, T, H, W)


def load_text_embeddings(path: str | Path) -> tuple[Tensor, Tensor]:
    """Prompt embeddings ``(N, L, E)`` and mask ``(N, L)`` from ``.safetensors`` (``text_emb``,
    ``text_mask``, as ``walt.precompute.embed_prompts`` writes) or ``.npy`` (embeddings only:
    every token is kept)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        tensors = load_file(str(path))
        if "text_emb" not in tensors:
            raise KeyError(f"{path} holds no 'text_emb' tensor")
        emb = tensors["text_emb"].float()
        mask = tensors.get("text_mask", torch.ones(emb.shape[:2])).bool()
    elif path.suffix == ".npy":
        emb = torch.from_numpy(np.load(path, allow_pickle=False)).float()
        mask = torch.ones(emb.shape[:2], dtype=torch.bool)
    else:
        raise ValueError(f"text_embeddings must be .safetensors or .npy, got {path.name}")
    if emb.ndim == 2:  # one prompt (L, E)
        emb, mask = emb[None], mask.reshape(1, -1)
    if emb.ndim != 3:
        raise ValueError(f"text embeddings must be (N, L, E), got {tuple(emb.shape)}")
    return emb, mask


def video_frames(path: str | Path) -> tuple[int, float, tuple[int, int]]:
    """A video's frame count (counted by decoding: headers may lack or misstate it), frame rate
    and displayed ``(H, W)``."""
    with naming_file(str(path)):
        info = probe_video(Path(path).read_bytes(), max_pixels=DEFAULT_MAX_PIXELS)
        with av.open(str(path)) as container:
            stream = open_video_stream(container, max_pixels=DEFAULT_MAX_PIXELS)
            count = sum(1 for _ in container.decode(stream))
    return count, info.fps, (info.height, info.width)


def iter_video(
    path: str | Path, *, size: tuple[int, int], chunk: int, num_frames: int
) -> Iterator[Tensor]:
    """The first ``num_frames`` frames of a video in pieces ``(1, C, T', H, W)`` of ``chunk``
    frames (the last may be shorter), decoded as they are needed: memory holds one piece."""
    if chunk < 1 or num_frames < 1:
        raise ValueError(f"chunk and num_frames must be >= 1, got {chunk} and {num_frames}")
    frames: list[np.ndarray] = []
    done = 0
    with av.open(str(path)) as container, naming_file(str(path)):
        stream = open_video_stream(container, max_pixels=DEFAULT_MAX_PIXELS)
        reformatter = VideoReformatter()
        for frame in container.decode(stream):
            frames.append(frame_to_rgb(frame, reformatter=reformatter))  # (H0, W0, 3) uint8
            if len(frames) == chunk or done + len(frames) == num_frames:
                yield frames_to_pixels(np.stack(frames), size=size, crop="center")[None]
                done, frames = done + len(frames), []
            if done == num_frames:
                return
    raise ValueError(f"{path} has {done + len(frames)} frames, fewer than num_frames={num_frames}")
