"""The frozen tokenizer as seen by the diffusion stage: pixels <-> normalized latents.

The per-channel latent mean and std come from the tokenizer's saved config (computed by
``python -m tokenizer.latent_stats``), never from literals: W.A.L.T reports that dropping latent
normalization costs FVD 60.7 -> 67.9.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tokenizer import load_tokenizer


class LatentCodec(nn.Module):
    """Frozen tokenizer wrapper producing the diffusion model's normalized latents.

    Args:
        path: the tokenizer's safetensors export or Lightning checkpoint.
        latent_channels: expected c; a tokenizer with another c is a configuration error.
    """

    def __init__(self, path: str | Path, *, latent_channels: int) -> None:
        super().__init__()
        if not Path(path).is_file():
            raise FileNotFoundError(
                f"tokenizer checkpoint {str(path)!r} does not exist; train one with "
                "`python train.py fit --config configs/tokenizer/...` and export it"
            )
        self.vae = load_tokenizer(path).eval().requires_grad_(False)
        if self.vae.latent_channels != latent_channels:
            raise ValueError(
                f"the tokenizer at {path} has {self.vae.latent_channels} latent channels but the "
                f"diffusion model is configured for latent_channels={latent_channels}"
            )
        cfg = self.vae.config
        if all(m == 0.0 for m in cfg["latent_mean"]) and all(s == 1.0 for s in cfg["latent_std"]):
            warnings.warn(
                f"the tokenizer at {path} carries no latent statistics (mean 0, std 1); run "
                "`python -m tokenizer.latent_stats` so latents are normalized (W.A.L.T sec. 5)",
                stacklevel=2,
            )

    @property
    def latent_channels(self) -> int:
        return self.vae.latent_channels

    def latent_shape(self, num_frames: int, size: tuple[int, int]) -> tuple[int, int, int]:
        """Latent (t, h, w) of a (T, H, W) clip."""
        return self.vae.latent_shape(num_frames, *size)

    def check_frames(self, num_frames: int, size: tuple[int, int]) -> None:
        """Raise a clear error when the tokenizer cannot take clips of this size."""
        self.vae.check_input(torch.empty(1, 3, num_frames, *size, device="meta"))

    @torch.no_grad()
    def encode(self, pixels: Tensor) -> Tensor:
        """Pixels (B, C, T, H, W) in [-1, 1] -> normalized latent means (B, c, t, h, w)."""
        return self.vae.normalize(self.vae.encode(pixels.to(self._dtype())))

    @torch.no_grad()
    def decode(self, z: Tensor, *, stream: bool | None = None) -> Tensor:
        """Normalized latents (B, c, t, h, w) -> pixels (B, C, T, H, W), clamped to [-1, 1];
        ``stream`` forces the tokenizer's temporal chunking on or off (default: by length)."""
        z = self.vae.denormalize(z.to(self._dtype()))
        return self.vae.decode(z, stream=stream).clamp(-1, 1)

    def latents(self, stream: Mapping[str, Any]) -> Tensor:
        """Normalized latents of a stream batch: precomputed ``latents`` or encoded ``pixels``."""
        if stream.get("latents") is not None:
            z = stream["latents"].to(self._device(), self._dtype())
            if z.ndim != 5 or z.shape[1] != self.latent_channels:
                raise ValueError(
                    f"precomputed latents must be (B, {self.latent_channels}, t, h, w), "
                    f"got {tuple(z.shape)}"
                )
            return self.vae.normalize(z)
        if stream.get("pixels") is None:
            raise KeyError("a stream batch needs 'pixels' or precomputed 'latents'")
        return self.encode(stream["pixels"])

    def _dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    def _device(self) -> torch.device:
        return next(self.vae.parameters()).device


PIXELS = "pixels"  # the ``tokenizer`` value that selects pixel-space diffusion


class PixelCodec(nn.Module):
    """The identity "tokenizer" of pixel-space diffusion (Video Diffusion Models, Ho et al. 2022):
    the backbone denoises the ``[-1, 1]`` frames themselves, ``c = 3``, no compression.

    Args:
        latent_channels: must be 3 (RGB); anything else is a configuration error.
    """

    def __init__(self, *, latent_channels: int = 3) -> None:
        super().__init__()
        if latent_channels != 3:
            raise ValueError(
                f"pixel-space diffusion has 3 channels but latent_channels={latent_channels}"
            )
        self.latent_channels = 3

    def latent_shape(self, num_frames: int, size: tuple[int, int]) -> tuple[int, int, int]:
        """The clip's own (T, H, W)."""
        return num_frames, size[0], size[1]

    def check_frames(self, num_frames: int, size: tuple[int, int]) -> None:
        if num_frames < 1 or min(size) < 1:
            raise ValueError(f"num_frames={num_frames} and size={size} must be positive")

    def encode(self, pixels: Tensor) -> Tensor:
        """Pixels (B, C, T, H, W) in [-1, 1] are the diffusion variable as they are."""
        return pixels

    def decode(self, z: Tensor, *, stream: bool | None = None) -> Tensor:
        """Samples (B, C, T, H, W) -> pixels clamped to [-1, 1] (``stream``: nothing to chunk)."""
        return z.clamp(-1, 1)

    def latents(self, stream: Mapping[str, Any]) -> Tensor:
        """A stream batch's ``pixels`` (precomputed latents belong to a tokenizer's space)."""
        if stream.get("pixels") is None:
            raise KeyError(
                "pixel-space diffusion (tokenizer: pixels) needs 'pixels' in the batch; set "
                "data.init_args.load_pixels: true and use pixel shards, not latent shards"
            )
        return stream["pixels"]


def make_codec(tokenizer: str | Path | None, *, latent_channels: int) -> nn.Module:
    """``LatentCodec`` for a tokenizer file; ``PixelCodec`` for ``None`` or ``"pixels"``."""
    if tokenizer is None or str(tokenizer) == PIXELS:
        return PixelCodec(latent_channels=latent_channels)
    return LatentCodec(tokenizer, latent_channels=latent_channels)
