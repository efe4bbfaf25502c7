"""Super-resolution stages of W.A.L.T's cascade (Gupta et al. 2023, Sec. 4.5): the low-res input.

An SR stage is a W.A.L.T model over the high-resolution latent ``(B, c, t, 2h, 2w)`` conditioned
on the low-resolution latent ``(B, c, t, h, w)`` of the same clip (same tokenizer, same latent
normalization), which the backbone upsamples 2x and concatenates on channels
(``models.lowres``).

**Noise-conditioning augmentation** (Ho et al. 2022, "Cascaded Diffusion Models", Sec. 4.2;
Imagen Video): the low-res latent is noised with the diffusion's own forward process to a noise
level (a fraction of ``num_train_timesteps``) drawn from ``U(0, max_noise_level)`` in training, and
that level is one more AdaLN scalar condition (``noise_level``, after ``fps``; x1000 in AdaLN, the
timesteps' scale). At sampling the level is fixed (``SamplingConfig.noise_level``), so the stage
does not trust the base stage's artefacts more than it learned to. The paper gives no maximum;
on our zero-terminal-SNR linear schedule (1000 steps) the SNR ``abar / (1 - abar)`` is 32 at
timestep 50, 3.6 at 150, 1.9 at 200, 1.08 at 250 and 0.64 at 300. We train on
``max_noise_level = 0.25`` (timesteps 0..250, down to SNR ~1, noise as strong as the signal) and
sample at ``noise_level = 0.15`` (timestep 150, SNR 3.6, inside the SNR 3 to 5 Imagen Video
samples at).

Training pairs come from the same high-res clip: its pixels downsampled 2x with antialiasing and
encoded by the frozen tokenizer (on the fly), or precomputed ``lowres_latents`` in the latent
shards (``python -m walt.precompute ... --lowres``), in which case the tokenizer never runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from common.frames import resize_frames
from walt.core.backbone_inputs import BackboneInputs
from walt.diffusion import GaussianDiffusion

Downsample = Literal["bilinear", "area"]
LOWRES_KEY = "lowres"  # the stream key of the (noised, normalized) low-res latent condition
SCALAR_NAME = "noise_level"  # its AdaLN scalar condition (see ConditionConfig.scalar_names)


@dataclass
class SuperResolutionConfig:
    """A super-resolution stage's low-res input (see the module docstring for the choices).

    The sampling level is ``SamplingConfig.noise_level``.

    Args:
        max_noise_level: largest training noise level, a fraction of ``num_train_timesteps``
            (levels drawn from ``U(0, max_noise_level)``); 0.25 reaches SNR ~1 on the default
            schedule.
        downsample: antialiased 2x pixel downsampling that makes low-res training clips on the
            fly (``"bilinear"`` or ``"area"``).
    """

    max_noise_level: float = 0.25
    downsample: Downsample = "bilinear"

    def __post_init__(self) -> None:
        check_level(self.max_noise_level, name="max_noise_level")
        if self.downsample not in ("bilinear", "area"):
            raise ValueError(f"downsample must be 'bilinear' or 'area', got {self.downsample!r}")

    def sample_levels(self, batch: int, *, generator: torch.Generator | None) -> Tensor:
        """Training levels ``(B,)`` drawn from ``U(0, max_noise_level)``."""
        return torch.rand(batch, generator=generator) * self.max_noise_level


def check_level(level: float, *, name: str) -> None:
    """The one check of a noise level: a finite fraction of ``num_train_timesteps``."""
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0.0 <= level <= 1.0:
        raise ValueError(f"{name} must be in [0, 1] (a fraction of num_train_timesteps), "
                         f"got {level!r}")


def level_timesteps(levels: Tensor, diffusion: GaussianDiffusion) -> Tensor:
    """Levels ``(B,)`` in [0, 1] -> the diffusion's integer timesteps ``(B,)``."""
    n = diffusion.num_train_timesteps
    return (levels * n).round().long().clamp(0, n - 1)


def downsample_pixels(pixels: Tensor, *, mode: Downsample = "bilinear") -> Tensor:
    """``(B, C, T, H, W) -> (B, C, T, H/2, W/2)``, each frame antialiased (no aliasing in the
    low-res clip the SR stage learns to invert)."""
    b, _, _, h, w = pixels.shape
    if h % 2 or w % 2:
        raise ValueError(f"pixels H, W = {(h, w)} must be even to downsample 2x")
    # (B, C, T, H/2, W/2)
    return resize_frames(pixels, size=(h // 2, w // 2), mode=mode, antialias=mode == "bilinear")


def batch_lowres_latents(codec, stream: Mapping[str, Any], *, mode: Downsample) -> Tensor:
    """Normalized low-res latents ``(B, c, t, h, w)`` of a training stream: its precomputed
    ``lowres_latents`` (raw, normalized here like ``latents``), else its pixels downsampled
    2x and encoded by the frozen tokenizer."""
    if stream.get("lowres_latents") is not None:
        return codec.latents({"latents": stream["lowres_latents"]})
    if stream.get("pixels") is None:
        raise KeyError("a super-resolution batch needs 'pixels' or precomputed 'lowres_latents' "
                       "(python -m walt.precompute ... --lowres)")
    return codec.latents({"pixels": downsample_pixels(stream["pixels"], mode=mode)})


def check_lowres_shape(lowres: Tensor, highres_shape: tuple[int, ...] | torch.Size) -> None:
    """``lowres`` must be ``(B, c, t, h/2, w/2)`` of the high-res latent ``(B, c, t, h, w)``."""
    b, c, t, h, w = highres_shape
    expected = (b, c, t, h // 2, w // 2)
    if tuple(lowres.shape) != expected or h % 2 or w % 2:
        raise ValueError(f"lowres_latents must be {expected} (half the high-res latent "
                         f"{tuple(highres_shape)} per side), got {tuple(lowres.shape)}")


def lowres_condition(
    stream: Mapping[str, Any],
    lowres: Tensor,
    *,
    levels: Tensor,
    diffusion: GaussianDiffusion,
    generator: torch.Generator | None,
) -> dict[str, Any]:
    """The stream plus its SR inputs: ``lowres`` noised to ``levels`` with ``q_sample`` (level 0
    is the clean latent) and ``noise_level`` ``(B,)``, the level the network is told.

    Args:
        lowres: ``(B, c, t, h, w)`` normalized low-res latents.
        levels: ``(B,)`` levels in [0, 1]; they are rounded to the diffusion's timesteps, and the
            rounded level is the one fed to AdaLN.
        generator: draws the noise (on its own device), so sampling is reproducible.
    """
    timesteps = level_timesteps(levels, diffusion).to(lowres.device)
    device = generator.device if generator is not None else lowres.device
    noise = torch.randn(lowres.shape, generator=generator, device=device).to(lowres)
    noised = diffusion.q_sample(lowres, timesteps, noise)
    clean = (timesteps == 0).reshape(-1, 1, 1, 1, 1)
    return {
        **stream,
        LOWRES_KEY: torch.where(clean, lowres, noised),  # (B, c, t, h, w)
        SCALAR_NAME: timesteps.to(lowres.dtype) / diffusion.num_train_timesteps,
    }


def check_super_resolution(
    inputs: BackboneInputs, sr: SuperResolutionConfig | None, *, latent_channels: int
) -> None:
    """A super-resolution module needs a backbone that takes the low-res latent, and back (the
    U-Nets take none: they cannot be SR stages)."""
    if sr is not None and inputs.lowres != latent_channels:
        raise ValueError(
            f"super_resolution needs a backbone with lowres_channels={latent_channels} (the "
            f"latent channels; models.WindowedDiT), got lowres_channels={inputs.lowres}"
        )
    if sr is None and inputs.lowres:
        raise ValueError(f"the backbone takes a low-res latent (lowres_channels={inputs.lowres}) "
                         "but the module has super_resolution=None")


def training_lowres(
    stream: Mapping[str, Any],
    z0: Tensor,
    *,
    sr: SuperResolutionConfig,
    codec,
    diffusion: GaussianDiffusion,
    noise_level: float | None,
    generator: torch.Generator,
) -> dict[str, Any]:
    """A training / validation stream plus its noised low-res latent and level: training
    (``noise_level=None``) draws the level from ``U(0, max_noise_level)``, evaluation uses the
    fixed ``noise_level``.

    Args:
        z0: ``(B, c, t, h, w)`` the stream's normalized high-res latents.
    """
    z_lr = batch_lowres_latents(codec, stream, mode=sr.downsample)  # (B, c, t, h/2, w/2)
    check_lowres_shape(z_lr, z0.shape)
    b = z0.shape[0]
    levels = (sr.sample_levels(b, generator=generator) if noise_level is None
              else torch.full((b,), float(noise_level)))
    return lowres_condition(stream, z_lr, levels=levels, diffusion=diffusion, generator=generator)


def sampling_lowres(
    stream: Mapping[str, Any],
    lowres_latents: Tensor | None,
    *,
    sr: SuperResolutionConfig | None,
    noise_level: float,
    codec,
    diffusion: GaussianDiffusion,
    num_frames: int,
    size: tuple[int, int],
    generator: torch.Generator | None,
    device: torch.device,
) -> dict[str, Any]:
    """The sampling stream plus the checked ``lowres_latents`` noised to ``noise_level`` (checked
    by ``SamplingConfig``), for clips of ``num_frames`` x ``size`` high-res pixels."""
    if sr is None:
        raise ValueError("lowres_latents given but this module is not a super-resolution stage "
                         "(super_resolution=None)")
    if lowres_latents is None:
        raise ValueError("a super-resolution module needs lowres_latents (B, c, t, h/2, w/2)")
    level = float(noise_level)
    b = lowres_latents.shape[0]
    highres = (b, codec.latent_channels, *codec.latent_shape(num_frames, size))
    check_lowres_shape(lowres_latents, highres)
    return lowres_condition(
        stream, lowres_latents.to(device), levels=torch.full((b,), level),
        diffusion=diffusion, generator=generator,
    )
