"""Window partitioning of a ``(B, t, h, w, D)`` token grid, with padding and attention masks.

A window is ``(wt, wh, ww)`` tokens. W.A.L.T (Gupta et al. 2023, Sec. 4.2) uses spatial windows
``1 x wh x ww`` (by default a whole latent frame) and spatiotemporal windows ``5 x 8 x 8``.
Windows larger than the grid are clipped to it (as in Swin), so an image (``t = 1``) in a
spatiotemporal block gets per-frame attention. Grids that do not divide by the window are padded
at the end of each axis; padded keys are masked out of every attention row.

Masks are boolean "allowed" tensors ``(..., N, Nk)``. Every query is always allowed to see
itself, so no row is ever fully masked (a padded query only sees itself; its output is dropped
when the windows are merged back). This keeps all attention kernels free of NaN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

Size3 = tuple[int, int, int]


def clip_window(window: Size3, grid: Size3) -> Size3:
    """The window actually used on ``grid``: each side clipped to the grid's size."""
    return (min(window[0], grid[0]), min(window[1], grid[1]), min(window[2], grid[2]))


def padded_grid(grid: Size3, window: Size3) -> Size3:
    """``grid`` rounded up to a multiple of ``window`` on each axis."""
    return tuple(-(-g // s) * s for g, s in zip(grid, window))  # type: ignore[return-value]


def window_partition(x: Tensor, window: Size3, *, pad_value: float = 0.0) -> Tensor:
    """Split a grid into windows, padding the end of each axis as needed.

    Args:
        x: ``(B, t, h, w, D)`` tokens.
        window: ``(wt, wh, ww)``, already clipped to the grid.
        pad_value: value written into padded positions.

    Returns:
        ``(B, nW, N, D)`` with ``N = wt * wh * ww``.
    """
    _, t, h, w, _ = x.shape
    tp, hp, wp = padded_grid((t, h, w), window)
    if (tp, hp, wp) != (t, h, w):
        x = F.pad(x, (0, 0, 0, wp - w, 0, hp - h, 0, tp - t), value=pad_value)
    wt, wh, ww = window
    return rearrange(
        x, "b (nt wt) (nh wh) (nw ww) d -> b (nt nh nw) (wt wh ww) d", wt=wt, wh=wh, ww=ww
    )


def window_merge(windows: Tensor, window: Size3, grid: Size3) -> Tensor:
    """Inverse of :func:`window_partition`: ``(B, nW, N, D)`` -> ``(B, t, h, w, D)``, unpadded."""
    tp, hp, wp = padded_grid(grid, window)
    wt, wh, ww = window
    x = rearrange(
        windows,
        "b (nt nh nw) (wt wh ww) d -> b (nt wt) (nh wh) (nw ww) d",
        nt=tp // wt,
        nh=hp // wh,
        wt=wt,
        wh=wh,
        ww=ww,
    )  # (B, tp, hp, wp, D)
    t, h, w = grid
    return x[:, :t, :h, :w]


def window_self_mask(
    grid: Size3, window: Size3, *, groups: Tensor | None = None, device: torch.device
) -> Tensor | None:
    """Which keys each query may attend to inside its window; ``None`` when all may.

    Args:
        grid: ``(t, h, w)`` unpadded grid.
        window: window clipped to the grid.
        groups: ``(B, t)`` long group id per frame, or ``None``. Tokens attend only to tokens of
            the same group; used to keep independent image frames to themselves.
        device: where to build the mask.

    Returns:
        ``(1 or B, nW, N, N)`` bool (``True`` = allowed, the diagonal always allowed), or ``None``.
    """
    needs_pad = padded_grid(grid, window) != tuple(grid)
    if not needs_pad and groups is None:
        return None
    t, h, w = grid
    if groups is None:
        ids = torch.zeros((1, t, h, w, 1), device=device)
    else:
        ids = groups.to(device=device, dtype=torch.float32)[:, :, None, None, None]
        ids = ids.expand(-1, t, h, w, 1)
    # Padding gets id -1, which no real token has, so padded keys are masked for real queries.
    ids = window_partition(ids, window, pad_value=-1.0)[..., 0]  # (1 or B, nW, N)
    allowed = (ids[..., :, None] == ids[..., None, :]) & (ids[..., None, :] >= 0)
    eye = torch.eye(allowed.shape[-1], dtype=torch.bool, device=device)
    return allowed | eye  # (1 or B, nW, N, N)


def window_key_valid(grid: Size3, window: Size3, *, device: torch.device) -> Tensor:
    """``(nW, N)`` bool: ``True`` where the window position holds a real (unpadded) token."""
    t, h, w = grid
    ones = torch.ones((1, t, h, w, 1), device=device)
    return window_partition(ones, window, pad_value=0.0)[0, ..., 0] > 0.5


def mask_to_bias(allowed: Tensor, dtype: torch.dtype) -> Tensor:
    """Boolean ``allowed`` -> additive bias (0 where allowed, ``-inf`` elsewhere), same shape."""
    bias = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return bias.masked_fill(~allowed, float("-inf"))
