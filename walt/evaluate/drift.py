"""Drift of long videos made by autoregressive extension: per-chunk colour statistics and seams.

Chunk arithmetic. A long video is generated window by window: the first window makes
``seam_overlap + chunk_frames`` frames; every later window is conditioned on the last
``seam_overlap`` frames written so far and adds ``chunk_frames`` new frames, which are appended.
With ``K = seam_overlap`` and ``N = chunk_frames``, chunk ``c`` therefore holds frames
``[s_c, s_{c+1})`` with ``s_0 = 0`` and ``s_c = K + c N`` for ``c >= 1`` (the last chunk may be
shorter). With ``K = 0`` the chunks are simply ``[c N, (c + 1) N)``.

Seams. Seam ``c`` (``c >= 1``) is the frame pair ``(s_c - 1, s_c)``: the last frame of chunk
``c - 1`` and the first new frame of chunk ``c``. Every other consecutive pair lies inside one
chunk. With ``d(i) = mean |x_{i+1} - x_i|`` over pixels and channels (values in [0, 1]), the
seam ratio is ``(d(s_c - 1) + eps) / (mean of d over the in-chunk pairs of chunks c - 1 and c
+ eps)`` with ``eps = 1e-6``: about 1 for a seamless join, much larger for a visible jump (and 1
for a still video).

Colour statistics per chunk: mean brightness (BT.601 luma ``0.299 R + 0.587 G + 0.114 B``) and
the mean and standard deviation of each RGB channel over the chunk's pixels, in [0, 1].
"""

from __future__ import annotations

import numpy as np

EPS = 1e-6
LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601


def chunk_starts(num_frames: int, *, chunk_frames: int, seam_overlap: int = 0) -> list[int]:
    """First frame of each chunk of a ``num_frames`` video (see the module docstring)."""
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    if seam_overlap < 0:
        raise ValueError(f"seam_overlap must be >= 0, got {seam_overlap}")
    if num_frames < 1:
        raise ValueError(f"the video has no frames (num_frames={num_frames})")
    return [0, *range(seam_overlap + chunk_frames, num_frames, chunk_frames)]


def frame_differences(frames: np.ndarray) -> np.ndarray:
    """``(T - 1,)`` mean absolute difference of consecutive frames of ``(T, H, W, 3)`` uint8."""
    x = frames.astype(np.float32) / 255.0
    return np.abs(np.diff(x, axis=0)).reshape(len(frames) - 1, -1).mean(axis=1)


def drift(frames: np.ndarray, *, chunk_frames: int, seam_overlap: int = 0) -> dict:
    """Per-chunk statistics and per-seam ratios of one ``(T, H, W, 3)`` uint8 video.

    Returns ``{"num_frames", "chunks": [{"chunk", "start", "stop", "brightness", "mean",
    "std"}], "seams": [{"seam", "frames", "difference", "within", "ratio"}]}``.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got {frames.shape}")
    starts = chunk_starts(len(frames), chunk_frames=chunk_frames, seam_overlap=seam_overlap)
    bounds = list(zip(starts, [*starts[1:], len(frames)]))
    chunks = []
    for c, (start, stop) in enumerate(bounds):
        pixels = frames[start:stop].reshape(-1, 3).astype(np.float64) / 255.0  # (T' H W, 3)
        chunks.append(
            {
                "chunk": c,
                "start": start,
                "stop": stop,
                "brightness": float((pixels @ LUMA).mean()),
                "mean": pixels.mean(axis=0).tolist(),
                "std": pixels.std(axis=0).tolist(),
            }
        )
    diffs = frame_differences(frames) if len(frames) > 1 else np.zeros(0)
    seams = []
    for c in range(1, len(bounds)):
        # In-chunk pairs (i, i + 1) of the two chunks that meet at this seam.
        within = [diffs[i] for a, b in bounds[c - 1 : c + 1] for i in range(a, b - 1)]
        # Chunks of one frame have no in-chunk pairs: no reference, no ratio (None).
        mean_within = float(np.mean(within)) if within else None
        difference = float(diffs[starts[c] - 1])
        seams.append(
            {
                "seam": c,
                "frames": [starts[c] - 1, starts[c]],
                "difference": difference,
                "within": mean_within,
                "ratio": None if mean_within is None else (difference + EPS) / (mean_within + EPS),
            }
        )
    return {"num_frames": len(frames), "chunks": chunks, "seams": seams}
