"""Side-by-side reconstruction videos (input | output) to disk (mp4 via PyAV) and the logger."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import torch
from einops import rearrange


def to_uint8_frames(x: torch.Tensor) -> np.ndarray:
    """One clip (C, T, H, W) in [-1, 1] -> (T, H, W, C) uint8."""
    x = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return rearrange(x, "c t h w -> t h w c").cpu().numpy()


def side_by_side(inp: torch.Tensor, out: torch.Tensor) -> np.ndarray:
    """Clips (C, T, H, W) -> (T, H, 2W, C) uint8 with the input left, the reconstruction right."""
    return np.concatenate([to_uint8_frames(inp), to_uint8_frames(out)], axis=2)


def write_mp4(frames: np.ndarray, path: str | Path, *, fps: float = 8.0) -> Path:
    """Write (T, H, W, 3) uint8 frames as H.264 mp4 (sizes padded to even for yuv420p)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    t, h, w, _ = frames.shape
    ph, pw = h + h % 2, w + w % 2
    if (ph, pw) != (h, w):
        frames = np.pad(frames, ((0, 0), (0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=max(1, int(round(fps))))
        stream.width, stream.height, stream.pix_fmt = pw, ph, "yuv420p"
        stream.options = {"crf": "18"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def log_to_logger(logger, frames: np.ndarray, path: Path, *, tag: str, step: int) -> None:
    """Send a side-by-side clip to wandb (as the mp4) or TensorBoard (first frame as image)."""
    experiment = getattr(logger, "experiment", None)
    if experiment is None:
        return
    name = type(logger).__name__
    if name == "WandbLogger":
        import wandb

        experiment.log({tag: wandb.Video(str(path), format="mp4"), "trainer/global_step": step})
    elif name == "TensorBoardLogger":
        # add_video needs moviepy, which we do not depend on; the mp4 is on disk
        experiment.add_image(tag, frames[0], global_step=step, dataformats="HWC")
