"""Analytic FLOPs of one training step of the benchmarked backbones, for MFU.

A multiply-add counts 2 FLOPs. Per transformer block, on ``N`` tokens of width ``D``:

- linear layers: q, k, v and output projections ``4 * 2 N D^2`` plus the MLP (ratio 4)
  ``2 * 2 N D (4D)``, i.e. ``24 N D^2`` (walt's attention projections run on the padded windows);
- attention, per window of ``n`` tokens (heads together have width ``D``):
  ``Q K^T`` ``2 n^2 D`` and ``A V`` ``2 n^2 D``, i.e. ``4 n^2 D`` per window.

The patch embedding and the output layer (``2 N c D`` each) count as linear; the conditioning
MLPs act on one vector per sample and are left out (< 0.01% here), as are the elementwise
operations (norms, softmax, GELU, AdamW). A training step is the forward plus a backward of
twice its FLOPs: ``3x`` forward (Kaplan et al. 2020; PaLM's MFU, Chowdhery et al. 2022, App. B).
Recomputation in the backward pass is not counted: MFU counts model FLOPs, not hardware FLOPs.
"""

from __future__ import annotations

import math

Size3 = tuple[int, int, int]
ST_WINDOW: Size3 = (5, 8, 8)  # W.A.L.T's spatiotemporal window (Gupta et al. 2023, App. A)
BACKWARD_FACTOR = 3  # forward + backward (2x forward)


def _windows(grid: Size3, window: Size3) -> tuple[int, int]:
    """(number of windows, tokens per window) of ``grid`` in ``window`` clipped and padded."""
    clipped = tuple(min(w, g) for w, g in zip(window, grid))
    count = math.prod(-(-g // w) for g, w in zip(grid, clipped))
    return count, math.prod(clipped)


def _block(tokens: int, dim: int, windows: list[tuple[int, int]]) -> tuple[float, float]:
    """(linear, attention) forward FLOPs of one block; ``windows``: (count, tokens) pairs,
    each pair one attention over ``count`` windows of ``tokens`` tokens."""
    padded = max(c * n for c, n in windows) if windows else tokens
    linear = 8 * padded * dim**2 + 16 * tokens * dim**2
    attention = sum(4 * c * n**2 * dim for c, n in windows)
    return float(linear), float(attention)


def backbone_flops(
    model: str,
    grid: Size3,
    *,
    depth: int,
    hidden: int,
    channels: int = 8,
    text_len: int = 16,
    spatial_window: tuple[int, int] | None = None,
) -> dict[str, float]:
    """Training-step FLOPs (forward + backward) of one benchmarked backbone at batch 1.

    Args:
        model: ``"walt"`` (S and ST blocks alternating), ``"latte"`` (``depth / 2`` spatial +
            ``depth / 2`` temporal blocks; spatial ones cross-attend to ``text_len`` tokens) or
            ``"cogvideox"`` (full attention over the video and ``text_len`` text tokens).
        grid: latent grid ``(t, h, w)`` (patch size 1).
        depth: transformer blocks.
        hidden: width ``D``.
        channels: latent channels in and out (walt's input adds self-cond and frame-cond).
        text_len: text tokens of the peers.
        spatial_window: walt's S window ``(wh, ww)``; ``None`` = the whole frame.

    Returns:
        ``{"linear", "attention", "total"}`` FLOPs of one step.
    """
    t, h, w = grid
    n, d = t * h * w, hidden
    linear = attention = 0.0
    if model == "walt":
        s_window = (1, *(spatial_window or (h, w)))
        for i in range(depth):
            window = s_window if i % 2 == 0 else ST_WINDOW
            lin, att = _block(n, d, [_windows(grid, window)])
            linear, attention = linear + lin, attention + att
        linear += 2 * n * d * (channels * 2 + channels + 1) + 2 * n * d * channels
    elif model == "latte":
        pairs = depth // 2
        spatial_lin, spatial_att = _block(n, d, [(t, h * w)])
        temporal_lin, temporal_att = _block(n, d, [(h * w, t)])
        # Cross-attention of the spatial blocks: q and out on the video, k and v on the text
        # (repeated per frame by diffusers), attention of every token to the text.
        cross_lin = 4 * n * d**2 + 4 * t * text_len * d**2
        cross_att = 4 * n * text_len * d
        linear = pairs * (spatial_lin + temporal_lin + cross_lin) + 4 * n * d * channels
        attention = pairs * (spatial_att + temporal_att + cross_att)
    elif model == "cogvideox":
        m = n + text_len
        lin, att = _block(m, d, [(1, m)])
        linear, attention = depth * lin + 4 * n * d * channels, depth * att
    else:
        raise ValueError(f"model must be 'walt', 'latte' or 'cogvideox', got {model!r}")
    linear, attention = BACKWARD_FACTOR * linear, BACKWARD_FACTOR * attention
    return {"linear": linear, "attention": attention, "total": linear + attention}


def conv3d_flops(
    *, in_channels: int, out_channels: int, kernel: Size3, out_voxels: int, batch: int = 1
) -> float:
    """Forward FLOPs of a dense 3D convolution: ``2 * Cin * Cout * prod(kernel)`` per output
    voxel."""
    return 2.0 * batch * in_channels * out_channels * math.prod(kernel) * out_voxels
