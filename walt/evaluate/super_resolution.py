"""How much a super-resolution stage adds over bicubic upsampling, on ground-truth clips.

For every reference clip at the SR stage's resolution (``H x W``):

1. the low-resolution clip is the reference downsampled 2x per side with antialiasing, as the
   stage's training pairs are made (``walt.core.super_resolution.downsample_pixels``);
2. it is encoded with the stage's tokenizer: the low-resolution latent the stage conditions on;
3. **bicubic**: that latent decoded (the "decoded base clip" a cascade's first stage would hand
   on) and upsampled 2x bicubically;
4. **SR**: the stage samples the high-resolution latent from it (deterministic DDIM at the given
   noise-conditioning level), decoded at ``H x W``.

Both are scored against the reference with ``tokenizer.metrics`` PSNR / SSIM (one
implementation for the project). A contact sheet shows low-res | bicubic | SR | ground truth.
"""

from __future__ import annotations

import functools
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from data.decode import ShortClipError
from data.transforms import frames_to_pixels
from tokenizer.metrics import psnr, ssim
from walt.core.generation import sampling_stream
from walt.core.sr_comparison import bicubic_upsample, comparison_sheet
from walt.core.super_resolution import downsample_pixels
from walt.evaluate.inputs import iter_media, read_clip, readable_media

SHEET_CLIPS = 4  # clips shown on the contact sheet


def reference_clips(
    reference: str, *, num_clips: int, num_frames: int, size: tuple[int, int], seed: int
) -> torch.Tensor:
    """The first ``num_clips`` videos of ``reference`` long enough for ``num_frames`` frames,
    centre-cropped to ``size``: ``(N, 3, T, H, W)`` in [-1, 1]. Shorter and undecodable
    videos are skipped, each named in a warning; past the loader's failure fraction the run
    stops (``walt.evaluate.inputs.readable_media``)."""
    rng = random.Random(seed)
    clips: list[torch.Tensor] = []
    videos = (item for item in iter_media(reference, name="reference") if item.kind == "video")
    read = functools.partial(read_clip, num_frames=num_frames, random_start=False, rng=rng)
    for _, frames in readable_media(videos, read, what=f"reference {reference}",
                                    skip_quietly=(ShortClipError,)):
        clips.append(frames_to_pixels(frames, size=size, crop="center"))
        if len(clips) == num_clips:
            break
    if not clips:
        raise ValueError(f"reference: no video of at least {num_frames} frames in {reference}")
    return torch.stack(clips)


@torch.no_grad()
def evaluate_super_resolution(
    module: Any,
    reference: str,
    *,
    num_clips: int = 32,
    batch_size: int = 8,
    labels: list[int] | None = None,
    seed: int = 0,
    sheet: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Per-clip and mean PSNR / SSIM of the SR stage and of bicubic upsampling.

    Args:
        module: an SR ``WALTModule`` (``module.is_super_resolution``) in eval mode; its
            ``num_frames`` and ``size`` (the high resolution) set the clips, its ``sampling``
            how they are sampled (the noise-conditioning ``noise_level`` included).
        reference: ground-truth videos (folder or shards) at or above the module's size.
        num_clips: clips scored (the first ones long enough).
        labels: class labels for a class-conditional stage (default: the null label).
        sheet: write the contact sheet of the first clips there.
    """
    if not getattr(module, "is_super_resolution", False):
        raise ValueError("module is not a super-resolution stage (train one with configs/sr/)")
    size = tuple(module.size) if not isinstance(module.size, int) else (module.size,) * 2
    gt = reference_clips(reference, num_clips=num_clips, num_frames=module.num_frames,
                            size=size, seed=seed)
    generator = torch.Generator(device=module.device).manual_seed(seed)
    rows: list[dict[str, Any]] = []
    shown: dict[str, list[torch.Tensor]] = {"lowres": [], "sr": [], "truth": []}
    for first in tqdm(range(0, len(gt), batch_size), desc="super-resolution", disable=not progress):
        truth = gt[first:first + batch_size].to(module.device)  # (B, 3, T, H, W)
        b = truth.shape[0]
        small = downsample_pixels(truth, mode=module.super_resolution.downsample)
        z_lr = module.codec.encode(small)  # (B, c, t, h/2f, w/2f)
        base = module.codec.decode(z_lr).float()  # (B, 3, T, H/2, W/2)
        bicubic = bicubic_upsample(base, 2)
        stream = sampling_stream(labels=_batch_labels(module, labels, first, b))
        sr = module.generate(stream=stream, num_samples=b, num_frames=module.num_frames,
                             size=size, lowres_latents=z_lr, generator=generator,
                             progress=False).float()
        scores = {name: (psnr(x, truth), ssim(x, truth)) for name, x in
                  (("sr", sr), ("bicubic", bicubic))}
        for i in range(b):
            rows.append({"clip": first + i, **{f"{name}_{metric}": float(value[k][i])
                         for name, value in scores.items()
                         for k, metric in enumerate(("psnr", "ssim"))}})
        if len(shown["sr"]) < SHEET_CLIPS:
            for key, x in (("lowres", base), ("sr", sr), ("truth", truth)):
                shown[key].extend(x.cpu())
    summary = {key: {"mean": float(np.mean(values)), "std": float(np.std(values))}
               for key in rows[0] if key != "clip"
               for values in ([row[key] for row in rows],)}
    if sheet is not None:
        kept = {key: torch.stack(x[:SHEET_CLIPS]) for key, x in shown.items()}
        comparison_sheet(kept["lowres"], kept["sr"], sheet, truth=kept["truth"],
                         max_clips=SHEET_CLIPS)
    return {"noise_level": module.sampling.noise_level, "num_clips": len(rows), **summary,
            "clips": rows}


def _batch_labels(module: Any, labels: list[int] | None, first: int, b: int) -> torch.Tensor | None:
    if not module.inputs.labels:
        return None
    if labels is None:
        return torch.full((b,), -1, dtype=torch.long)  # the null label
    picked = [labels[(first + i) % len(labels)] for i in range(b)]
    return torch.tensor(picked, dtype=torch.long)


def mean_gain(result: dict[str, Any]) -> float:
    """SR PSNR minus bicubic PSNR (dB), over the mean of the clips."""
    return float(np.mean([r["sr_psnr"] - r["bicubic_psnr"] for r in result["clips"]]))
