"""Side-by-side reconstruction videos (input | output) to disk (mp4 via PyAV) and the logger."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from data.encode import to_uint8_frames


def side_by_side(inp: torch.Tensor, out: torch.Tensor) -> np.ndarray:
    """Clips (C, T, H, W) -> (T, H, 2W, C) uint8 with the input left, the reconstruction right."""
    return np.concatenate([to_uint8_frames(inp), to_uint8_frames(out)], axis=2)


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
