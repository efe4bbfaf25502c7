"""Sampling latents from a trained backbone: the bridge between the network and ``walt.samplers``.

The network never sees guidance: the denoiser built here answers ``uncond=True`` by replacing the
label and text with their nulls and ``drop_frames=True`` by dropping the frame condition, and the
sampler combines the answers (classifier-free guidance, Ho & Salimans 2022). The backbone's
inputs come from :func:`walt.core.backbone_inputs.build_conditions`, as in training.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from walt.core.backbone_inputs import BackboneInputs, ConditionConfig, build_conditions
from walt.core.latents import LatentCodec
from walt.diffusion.frame_masks import keep_known
from walt.samplers import ClassifierFreeGuidance, Sampler, sample


def sampling_stream(
    *,
    labels: Tensor | None = None,
    text_emb: Tensor | None = None,
    text_mask: Tensor | None = None,
    fps: float | Tensor | None = None,
) -> dict[str, Any]:
    """The conditions of a sampling batch as a stream (the keys of a training batch)."""
    stream: dict[str, Any] = {}
    if labels is not None:
        stream["label"] = torch.as_tensor(labels).long()
    if text_emb is not None:
        if text_mask is None:
            text_mask = torch.ones(text_emb.shape[:2], dtype=torch.bool)
        stream["text_emb"], stream["text_mask"] = text_emb, text_mask
    if fps is not None:
        stream["fps"] = torch.as_tensor(fps, dtype=torch.float32)
    return stream


def generate_latents(
    net: nn.Module,
    codec: LatentCodec,
    *,
    stream: Mapping[str, Any],
    cond_cfg: ConditionConfig,
    inputs: BackboneInputs,
    num_samples: int | None,
    num_frames: int,
    size: tuple[int, int],
    cond_latents: Tensor | None,
    cond_mask: Tensor | None,
    sampler: Sampler,
    guidance: ClassifierFreeGuidance | None,
    generator: torch.Generator | None,
    progress: bool,
) -> Tensor:
    """Sample normalized latents (B, c, t, h, w).

    Args:
        stream: the conditions (``label``, ``text_emb``/``text_mask``, ``fps``), see
            :func:`sampling_stream`; a label ``-1`` is the null label.
        cond_cfg, inputs: the module's conditioning config and what its backbone takes.
        num_samples: B when no labels, text or frames fix it.
        num_frames, size: the pixel (T, (H, W)) of the clips to make.
        cond_latents: (B, c, t, h, w) normalized latents whose known frames condition the clip
            (image to video, prediction, extension, interpolation); the rest may be anything.
        cond_mask: (B, t) latent-frame mask: 1 where ``cond_latents`` is known.
        sampler: the sampler, with its number of steps (``SamplingConfig.make_sampler``).
        guidance: classifier-free guidance (scales, schedule, rescale); ``None`` for none.
    """
    device = next(net.parameters()).device
    b = _batch_size(stream.get("label"), stream.get("text_emb"), cond_latents, num_samples)
    t, h, w = codec.latent_shape(num_frames, size)
    shape = (b, codec.latent_channels, t, h, w)
    if cond_latents is not None:
        if cond_mask is None or tuple(cond_mask.shape) != (b, t):
            raise ValueError(f"cond_latents needs a (B, t)=({b}, {t}) latent-frame cond_mask")
        if tuple(cond_latents.shape) != shape:
            raise ValueError(f"cond_latents must be {shape}, got {tuple(cond_latents.shape)}")
        z_c, cond_mask = cond_latents.to(device), cond_mask.to(device)
    else:
        z_c = torch.zeros(shape, device=device)
    conds = build_conditions(
        stream, cond_cfg, z0=z_c, training=False, inputs=inputs,
        frame_mask=cond_mask if cond_latents is not None else None,
    )

    def denoiser(
        x_t: Tensor, timesteps: Tensor, *, self_cond: Tensor | None, uncond: bool,
        drop_frames: bool = False,
    ) -> Tensor:
        if timesteps.ndim == 0:
            timesteps = timesteps.to(device).expand(x_t.shape[0])
        kwargs = conds.model_kwargs(uncond=uncond, drop_frames=drop_frames)
        return net(x_t, timesteps.float(), self_cond=self_cond, **kwargs)

    z = sample(
        denoiser,
        sampler,
        shape,
        guidance=guidance,
        generator=generator,
        device=device,
        self_condition=inputs.self_cond,
        progress=progress,
    )
    if cond_latents is not None:
        z = keep_known(z, z_c, cond_mask)  # the given frames exactly; the sampler fills the rest
    return z


def check_finite(x: Tensor, *, what: str) -> Tensor:
    """``x`` if every value is finite, else a clear error (before anything is written)."""
    if not bool(torch.isfinite(x).all()):
        bad = (~torch.isfinite(x)).flatten(1).any(dim=1).nonzero().flatten().tolist()
        raise FloatingPointError(
            f"generation produced non-finite {what} (NaN or inf) for clip(s) {bad} of the batch; "
            "nothing was written for them. Check the sampling options and the tokenizer's "
            "latent statistics (latent_mean, latent_std)")
    return x


def _batch_size(*candidates: Tensor | int | None) -> int:
    for c in candidates:
        if isinstance(c, Tensor):
            return c.shape[0]
        if isinstance(c, int):
            return c
    raise ValueError("give labels, text, cond_latents or num_samples to fix the batch size")


def known_latents(
    codec: LatentCodec,
    cond_pixels: Tensor,
    *,
    num_frames: int,
    size: tuple[int, int],
    cond_mask: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """Encode known pixel frames into a clip-sized latent and its (B, t) known-frame mask.

    ``cond_pixels`` (B, C, T', H, W) with ``T' = 1 + 4(t' - 1)`` frames fill the clip's first
    ``t'`` latent frames (the causal tokenizer encodes a prefix on its own: one image -> 1 latent
    frame, 5 frames -> 2); the rest are zeros. A full-length ``cond_pixels`` needs ``cond_mask``,
    which picks the known frames; a shorter one defaults to its ``t'`` leading frames.
    """
    if cond_pixels.ndim != 5:
        raise ValueError(f"cond_pixels must be (B, C, T, H, W), got {tuple(cond_pixels.shape)}")
    t, h, w = codec.latent_shape(num_frames, size)
    if tuple(cond_pixels.shape[3:]) != tuple(size):
        raise ValueError(f"cond_pixels must be {size[0]}x{size[1]} pixels, got "
                         f"{tuple(cond_pixels.shape[3:])}")
    if cond_pixels.shape[2] > num_frames:
        raise ValueError(f"cond_pixels has {cond_pixels.shape[2]} frames, more than the clip's "
                         f"num_frames={num_frames}")
    z = codec.encode(cond_pixels)  # (B, c, t', h, w)
    b, t_known = z.shape[0], z.shape[2]
    if t_known == t and cond_mask is None:
        raise ValueError("cond_pixels covers the whole clip: give cond_mask (B, t) to say which "
                         "latent frames are known")
    if cond_mask is None:
        cond_mask = torch.zeros(b, t, device=z.device)
        cond_mask[:, :t_known] = 1.0
    full = z.new_zeros(b, z.shape[1], t, h, w)
    full[:, :, :t_known] = z
    return full, cond_mask.to(z.device)
