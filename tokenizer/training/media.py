"""Side-by-side reconstruction clips (input | output); written with ``data.encode.write_mp4`` and
sent to the loggers with ``common.media_log``."""

from __future__ import annotations

import numpy as np
import torch

from data.encode import to_uint8_frames


def side_by_side(inp: torch.Tensor, out: torch.Tensor) -> np.ndarray:
    """Clips (C, T, H, W) -> (T, H, 2W, C) uint8 with the input left, the reconstruction right."""
    return np.concatenate([to_uint8_frames(inp), to_uint8_frames(out)], axis=2)
