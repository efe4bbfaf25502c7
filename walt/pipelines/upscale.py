"""Upscale mode: a given low-resolution video through the SR stages (W.A.L.T Sec. 4.5's latent
super-resolution, with no base model).

The video is read and upscaled in pieces of the first stage's clip length ``T`` (its
``num_frames``), so any length runs at the memory of one piece: each piece is encoded by the
stages' tokenizer (the causal tokenizer encodes a piece of ``T = 1 + 4(t - 1)`` frames on its
own), its latents go through every stage (2x per side each) and the top stage decodes. The last
piece is padded to ``T`` by repeating its last frame and cropped back after decoding, so the
output has exactly the video's frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from walt.pipelines.cascade import SRStage, output_size, to_pixels
from walt.pipelines.inputs import iter_video
from walt.pipelines.outputs import ClipSink
from walt.pipelines.settings import GenerationSettings


def check_upscale_size(codec, num_frames: int, size: Sequence[int], video: str) -> None:
    """Raise a clear error, saying what to pass, when the tokenizer cannot take ``size``."""
    factor = getattr(getattr(codec, "vae", None), "spatial_compression", 1)
    h, w = size
    if h % factor or w % factor or h < factor or w < factor:
        fit = f"{max(factor, h // factor * factor)}x{max(factor, w // factor * factor)}"
        raise ValueError(
            f"upscale: {video} is read at {h}x{w}, but the tokenizer needs sides divisible by "
            f"{factor}; pass --size HxW with both multiples of {factor} (e.g. --size {fit}; the "
            "video is resized to cover it and centre-cropped)")
    codec.check_frames(num_frames, tuple(size))


def pad_frames(pixels: Tensor, num_frames: int) -> Tensor:
    """``(B, C, T', H, W)`` padded to ``num_frames`` by repeating the last frame."""
    missing = num_frames - pixels.shape[2]
    if missing <= 0:
        return pixels
    return torch.cat([pixels, pixels[:, :, -1:].expand(-1, -1, missing, -1, -1)], dim=2)


@torch.no_grad()
def upscale_video(
    stages: Sequence[SRStage],
    s: GenerationSettings,
    out: Path,
    *,
    streams: tuple[dict[str, Tensor], list[str] | None, int],
    png_frames: bool = False,
    progress: bool = True,
) -> Path:
    """Write ``s.video`` upscaled by the ``stages`` (2x per side each) into ``out`` as clip 0.

    Args:
        stages: the SR stages, in order, each with its sampling (its noise level included).
        s: resolved settings (``video``, ``num_frames`` to take, low-resolution ``size``, ``fps``,
            ``seed``).
        streams: the run's per-clip conditions (labels / text), as ``VideoPipeline`` builds them.
    """
    first = stages[0].module
    chunk, size = first.num_frames, (s.size[0], s.size[1])
    check_upscale_size(first.codec, chunk, size, s.video)
    conditions, _, _ = streams
    stream = {k: v[:1] for k, v in conditions.items()}
    stream["fps"] = torch.full((1,), float(s.fps))
    generator = torch.Generator(device=first.device).manual_seed(s.seed)
    pieces = -(-s.num_frames // chunk)
    bar = tqdm(total=pieces * len(stages), desc=f"upscale (pieces x {len(stages)} stages)",
               disable=not progress)
    run = partial(to_pixels, None, stages, stream=stream, num_frames=chunk, size=size,
                  generator=generator, progress=progress, on_stage=partial(bar.update, 1))
    with ClipSink(out, num_clips=1, total_frames=s.num_frames, size=output_size(size, stages),
                  fps=s.fps, png_frames=png_frames, captions=[Path(s.video).name]) as sink:
        for piece in iter_video(s.video, size=size, chunk=chunk, num_frames=s.num_frames):
            frames = piece.shape[2]
            z = first.codec.encode(pad_frames(piece, chunk).to(first.device))  # (1, c, t, h, w)
            pixels = run(z)  # (1, C, chunk, 2^n H, 2^n W)
            sink.push(pixels[:, :, :frames])
        sink.close()
    bar.close()
    return out
