"""Sampling latents from a trained backbone: the bridge between the network and ``walt.samplers``.

The network never sees guidance: the denoiser built here answers ``uncond=True`` by replacing every
guided condition (label, text, frame conditioning) with its null, and the sampler combines the two
answers (classifier-free guidance, Ho & Salimans 2022).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from walt.diffusion import GaussianDiffusion
from walt.diffusion.frame_masks import frame_condition, per_frame
from walt.lightning.backbone_inputs import Conditions
from walt.lightning.latents import LatentCodec
from walt.samplers import ClassifierFreeGuidance, make_sampler, sample


def generate_latents(
    net: nn.Module,
    diffusion: GaussianDiffusion,
    codec: LatentCodec,
    *,
    labels: Tensor | None,
    text_emb: Tensor | None,
    text_mask: Tensor | None,
    num_samples: int | None,
    num_frames: int,
    size: tuple[int, int],
    cond_pixels: Tensor | None,
    cond_mask: Tensor | None,
    sampler: str,
    sampler_options: Mapping[str, Any],
    num_inference_steps: int,
    guidance: ClassifierFreeGuidance | None,
    generator: torch.Generator | None,
    progress: bool,
) -> Tensor:
    """Sample normalized latents (B, c, t, h, w).

    Args:
        labels: (B,) class indices, or None for unconditional / text models.
        text_emb, text_mask: (B, L, E) and (B, L) text conditioning.
        num_samples: B when no labels, text or frames fix it.
        num_frames, size: the pixel (T, (H, W)) of the clips to make.
        cond_pixels: (B, C, T, H, W) known frames (the rest may be anything), for image to video,
            extension and interpolation.
        cond_mask: (B, t) latent-frame mask: 1 where ``cond_pixels`` is known.
        sampler, sampler_options: the registered sampler's name and its own options.
        guidance: classifier-free guidance (scale, schedule, rescale); ``None`` for none.
    """
    device = next(net.parameters()).device
    b = _batch_size(labels, text_emb, cond_pixels, num_samples)
    t, h, w = codec.latent_shape(num_frames, size)
    conds = Conditions()
    if labels is not None:
        conds.class_labels = labels.to(device).long()
        conds.drop_class = torch.zeros(b, dtype=torch.bool, device=device)
    if text_emb is not None:
        conds.text_emb, conds.text_mask = text_emb.to(device), text_mask.to(device).bool()
        conds.drop_text = torch.zeros(b, dtype=torch.bool, device=device)
    if cond_pixels is not None:
        if cond_mask is None or cond_mask.shape != (b, t):
            raise ValueError(f"cond_pixels needs a (B, t)=({b}, {t}) latent-frame cond_mask")
        z_c = codec.encode(cond_pixels.to(device))
        conds.frame_cond = frame_condition(z_c, cond_mask.to(device))

    def denoiser(
        x_t: Tensor, timesteps: Tensor, *, self_cond: Tensor | None, uncond: bool
    ) -> Tensor:
        if timesteps.ndim == 0:
            timesteps = timesteps.to(device).expand(x_t.shape[0])
        return net(x_t, timesteps.float(), self_cond=self_cond, **conds.model_kwargs(uncond=uncond))

    z = sample(
        denoiser,
        make_sampler(
            sampler, diffusion, num_inference_steps=num_inference_steps, **sampler_options
        ),
        (b, codec.latent_channels, t, h, w),
        guidance=guidance,
        generator=generator,
        device=device,
        self_condition=bool(getattr(net, "use_self_cond", False)),
        progress=progress,
    )
    if conds.frame_cond is not None:
        # Known frames are kept exactly; the sampler only fills in the rest.
        m = per_frame(cond_mask.to(z))  # (B, t) -> (B, 1, t, 1, 1)
        z = m * z_c + (1 - m) * z
    return z


def _batch_size(*candidates: Tensor | int | None) -> int:
    for c in candidates:
        if isinstance(c, Tensor):
            return c.shape[0]
        if isinstance(c, int):
            return c
    raise ValueError("give labels, text, cond_pixels or num_samples to fix the batch size")
