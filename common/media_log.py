"""Sending media that is already on disk to the experiment loggers (wandb, TensorBoard).

Both stages write their clips as mp4 files first (``data.encode.write_mp4``) and then hand them
to the loggers here: wandb takes the mp4s themselves and a still image; TensorBoard takes the
still image only (its ``add_video`` needs moviepy, which the project does not depend on). Other
loggers (CSV) take no media; the files on disk are the record.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def log_media(
    loggers: Sequence, *, tag: str, step: int, videos: Sequence[Path], image: np.ndarray
) -> None:
    """Log ``videos`` (mp4 paths) and ``image`` ((H, W, 3) uint8) under ``tag`` at ``step``."""
    for logger in loggers:
        name = type(logger).__name__
        if name == "WandbLogger":
            import wandb  # optional: only runs that log to Weights & Biases need it loaded

            logger.experiment.log(
                {
                    tag: [wandb.Video(str(p), format="mp4") for p in videos],
                    f"{tag}_still": wandb.Image(image),
                    "trainer/global_step": step,
                }
            )
        elif name == "TensorBoardLogger":
            logger.experiment.add_image(tag, image, global_step=step, dataformats="HWC")
