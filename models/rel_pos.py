"""Swin-style relative position bias for 3D attention windows.

Each head learns one scalar per relative offset ``(dt, dy, dx)`` inside a window
(Liu et al. 2021, Swin; used by W.A.L.T, Gupta et al. 2023, Sec. 4.2). The table is stored as a
``(heads, 2wt-1, 2wh-1, 2ww-1)`` grid, which makes resizing it to a new window a plain trilinear
interpolation (how Swin transfers a table to a larger window when fine-tuning).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from models.windows import Size3


def _interpolate_table(table: Tensor, size: Size3) -> Tensor:
    """``(heads, a, b, c)`` -> ``(heads, *size)`` by trilinear interpolation."""
    if tuple(table.shape[1:]) == tuple(size):
        return table
    return F.interpolate(table[None], size=size, mode="trilinear", align_corners=True)[0]


class RelativePositionBias(nn.Module):
    """Learned bias ``(heads, N, N)`` for windows up to ``window``; larger ones interpolate."""

    def __init__(self, *, window: Size3, num_heads: int) -> None:
        """Args:
        window: the largest ``(wt, wh, ww)`` window the table covers without interpolation.
        num_heads: one table per head.
        """
        super().__init__()
        if min(window) < 1:
            raise ValueError(f"window must be positive on every axis, got {window}")
        self.window: Size3 = tuple(window)  # type: ignore[assignment]
        size = tuple(2 * s - 1 for s in window)
        self.table = nn.Parameter(torch.zeros(num_heads, *size))
        nn.init.trunc_normal_(self.table, std=0.02)

    def resize(self, window: Size3) -> None:
        """Permanently re-grid the table for a new maximum window (fine-tuning at a new size)."""
        size = tuple(2 * s - 1 for s in window)
        with torch.no_grad():
            table = _interpolate_table(self.table.data, size)  # type: ignore[arg-type]
        self.table = nn.Parameter(table.contiguous())
        self.window = tuple(window)  # type: ignore[assignment]

    def forward(self, window: Size3) -> Tensor:
        """Bias for a window of size ``window``: ``(heads, N, N)`` with ``N = wt * wh * ww``.

        Windows within the table are indexed directly (offsets are centred, so a smaller window
        reuses the central part of the table); larger ones use an on-the-fly interpolated table.
        """
        table = self.table
        if any(s > m for s, m in zip(window, self.window)):
            size = tuple(2 * max(s, m) - 1 for s, m in zip(window, self.window))
            table = _interpolate_table(table, size)  # type: ignore[arg-type]
        _, st, sh, sw = table.shape
        axes = [torch.arange(s, device=table.device) for s in window]
        coords = torch.stack(torch.meshgrid(*axes, indexing="ij"))  # (3, wt, wh, ww)
        coords = rearrange(coords, "k t h w -> k (t h w)")  # (3, N)
        # Flat index of each pair's offset in the centred table: one (N, N) gather, not three.
        flat = (coords[0] * sh + coords[1]) * sw + coords[2]  # (N,)
        centre = ((st - 1) // 2 * sh + (sh - 1) // 2) * sw + (sw - 1) // 2
        index = flat[:, None] - flat[None, :] + centre  # (N, N)
        return table.reshape(table.shape[0], -1)[:, index]  # (heads, N, N)
