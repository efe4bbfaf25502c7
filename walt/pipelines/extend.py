"""Long videos by autoregressive extension (W.A.L.T App. A).

Frame arithmetic, for chunks of ``T = 1 + 4(t - 1)`` pixel frames (``t`` latent frames):

- chunk 0 is ``T`` frames: sampled from noise, or conditioned on a start image (1 latent frame)
  or on the first 5 frames of a start video (2 latent frames);
- every later chunk is conditioned on the last 2 latent frames, re-encoded from the last
  ``OVERLAP_FRAMES = 5`` pixel frames written so far (the causal tokenizer encodes 5 frames to
  exactly 2 latent frames). Its first 5 decoded frames re-draw those known frames, so they are
  dropped and the chunk adds ``T - 5`` new frames;
- ``n`` chunks give ``T + (n - 1)(T - 5)`` frames (17-frame chunks: 17, 29, 41, 53, ...), with no
  frame repeated or skipped at the seams. In ``python -m walt.evaluate drift`` terms:
  ``--seam-overlap 5 --chunk-frames T-5``.

With a cascade (``finish``: the SR stages and the top decode), each chunk's base latents are
upscaled as soon as the chunk is made and its top-resolution frames are emitted, while the next
chunk is still conditioned on the base-resolution frames (the base model's own input).

Only one chunk is held at a time: latents are decoded chunk by chunk with the tokenizer in
streaming mode and frames go straight to the mp4 writers, so peak memory does not grow with the
number of chunks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from walt.core.generation import check_finite

OVERLAP_FRAMES = 5  # pixel frames re-encoded to the 2 conditioning latent frames


def extended_length(num_frames: int, num_chunks: int) -> int:
    """Frames of a video of ``num_chunks`` chunks of ``num_frames`` frames (see module doc)."""
    if num_frames <= OVERLAP_FRAMES:
        raise ValueError(f"extension needs chunks longer than {OVERLAP_FRAMES} frames, got "
                         f"num_frames={num_frames}")
    if num_chunks < 1:
        raise ValueError(f"num_chunks must be >= 1, got {num_chunks}")
    return num_frames + (num_chunks - 1) * (num_frames - OVERLAP_FRAMES)


@torch.no_grad()
def extend(
    module,
    *,
    stream: Mapping[str, Any],
    num_samples: int,
    num_chunks: int,
    num_frames: int,
    size: tuple[int, int],
    start: Tensor | None,
    emit: Callable[[Tensor], None],
    generator: torch.Generator | None,
    on_chunk: Callable[[], None] | None = None,
    finish: Callable[[Tensor], Tensor] | None = None,
    **sampling: Any,
) -> int:
    """Generate ``num_samples`` long clips chunk by chunk, passing each chunk's new frames
    ``(B, C, T', H, W)`` to ``emit``; returns the frames per clip.

    Args:
        module: a ``WALTModule`` (its backbone must take frame conditions unless
            ``num_chunks == 1`` and ``start`` is None).
        stream: the conditions (labels, text, fps), see ``sampling_stream``.
        start: ``(B, C, T0, H, W)`` start frames (an image, ``T0 = 1``, or the first 5 frames of
            a video), or None to start from noise.
        finish: maps a chunk's base latents (B, c, t, h, w) to the pixels to emit, e.g. the
            cascade's top-resolution frames (default: the base decode).
        sampling: passed to ``module.generate`` (``sampling``, ``progress``).
    """
    total = extended_length(num_frames, num_chunks)
    cond = start
    for chunk in range(num_chunks):
        z = module.generate(
            stream=stream, num_samples=num_samples, num_frames=num_frames, size=size,
            cond_pixels=cond, generator=generator, decode=False, **sampling,
        )  # (B, c, t, h, w)
        check_finite(z, what=f"latents in chunk {chunk}")
        pixels = module.codec.decode(z, stream=True)  # (B, C, T, H, W)
        if on_chunk is not None:
            on_chunk()
        out = pixels if finish is None else finish(z)  # (B, C, T, H', W')
        emit(out if chunk == 0 else out[:, :, OVERLAP_FRAMES:])
        cond = pixels[:, :, -OVERLAP_FRAMES:]  # (B, C, 5, H, W) -> 2 latent frames next chunk
        del z, pixels, out
    return total
