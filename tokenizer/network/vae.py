"""CausalVAE: the W.A.L.T tokenizer (MAGVIT-v2 causal 3D CNN with a continuous latent).

Images and videos share one latent space: a clip of ``1 + 4k`` frames maps to ``1 + k`` latent
frames and an image (``T = 1``) to one latent frame, equal to the first latent frame of any
video that starts with it (W.A.L.T Sec. 3.1).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from common.presets import resolve_preset
from common.registry import register
from tokenizer.network.decoder import Decoder
from tokenizer.network.distribution import DiagonalGaussian
from tokenizer.network.encoder import Encoder
from tokenizer.network.padding import pad_clip
from tokenizer.network.streaming import decode_chunks, encode_chunks, tiled

PRESETS: dict[str, dict[str, Any]] = {
    # for tests and the quickstart: < 1M parameters
    "tiny": {"base_channels": 16, "channel_mults": [1, 1, 2, 2], "num_res_blocks": 1, "groups": 8},
    # W.A.L.T Table 8: 128 base channels, multipliers 1,2,2,4 (video), 4 res blocks per level
    "walt": {
        "base_channels": 128,
        "channel_mults": [1, 2, 2, 4],
        "num_res_blocks": 4,
        "groups": 32,
    },
    "walt-image": {
        "base_channels": 128,
        "channel_mults": [1, 1, 2, 4],
        "num_res_blocks": 4,
        "groups": 32,
    },
}


def latent_size(
    num_frames: int,
    height: int,
    width: int,
    *,
    temporal_compression: int = 4,
    spatial_compression: int = 8,
) -> tuple[int, int, int]:
    """Latent ``(t, h, w)`` of a ``(T, H, W)`` clip: ``t = 1 + (T - 1) / 4``, ``h = H / 8``, ``w = W / 8``
    with W.A.L.T's compressions (Sec. 3.1); a clear error when the clip does not divide."""
    r, s = temporal_compression, spatial_compression
    if num_frames < 1 or (num_frames - 1) % r:
        raise ValueError(f"num_frames={num_frames} is not 1 + {r}k")
    if height % s or width % s:
        raise ValueError(f"size {height}x{width} is not divisible by {s}")
    return 1 + (num_frames - 1) // r, height // s, width // s


@register("tokenizer")
class CausalVAE(nn.Module):
    """Causal 3D-CNN VAE with a diagonal-Gaussian latent.

    Args:
        preset: a name of ``PRESETS`` (``tiny``, ``walt``, ``walt-image``) giving the four sizes
            below where they are ``None``; ``None`` = give all four (see ``common.presets``).
        base_channels: channels at full resolution (``None``: the preset's).
        channel_mults: per-level multipliers; ``len - 1`` 2x spatial downsamples (``None``: the
            preset's).
        num_res_blocks: residual blocks per level (``None``: the preset's).
        latent_channels: ``c`` (8 in W.A.L.T).
        temporal_compression: frames per latent frame after the first (4).
        groups: GroupNorm groups (``None``: the preset's).
        pad_mode: causal front padding, ``"replicate"`` or ``"zeros"``.
        stream_above: decode/encode in temporal chunks when the clip has more latent frames
            (default 1: every video streams; streaming equals one-shot to float tolerance and
            bounds activation memory by one chunk, which is also the fastest on CPU).
        stream_chunk: latent frames per chunk when streaming (default 1: 4 pixel frames).
        stream_frames: when streaming, the full-frame-rate levels (before the first temporal
            downsample, after the last temporal upsample) run this many frames at a time.
        tile_above: tile spatially when a frame side exceeds this many pixels (0 = never).
        tile_size: tile side in pixels when tiling (multiple of the spatial compression).
        tile_overlap: overlap between tiles in pixels (multiple of the spatial compression).
        latent_mean: per-channel latent mean for ``normalize`` (default zeros).
        latent_std: per-channel latent std for ``normalize`` (default ones).
        residual: DC-AE residual autoencoding (Chen et al. 2024): non-parametric
            space-to-channel / channel-to-space shortcuts around every down- and upsample and
            at the latent, so training starts near a pooling codec and learns the residual.
            Opt-in with any preset; off keeps the presets' networks exactly as before.
    """

    def __init__(
        self,
        *,
        preset: str | None = "walt",
        base_channels: int | None = None,
        channel_mults: list[int] | tuple[int, ...] | None = None,
        num_res_blocks: int | None = None,
        latent_channels: int = 8,
        temporal_compression: int = 4,
        groups: int | None = None,
        pad_mode: str = "replicate",
        stream_above: int = 1,
        stream_chunk: int = 1,
        stream_frames: int = 1,
        tile_above: int = 512,
        tile_size: int = 256,
        tile_overlap: int = 64,
        latent_mean: list[float] | None = None,
        latent_std: list[float] | None = None,
        residual: bool = False,
    ) -> None:
        super().__init__()
        sizes = resolve_preset(
            PRESETS,
            preset,
            model="tokenizer",
            base_channels=base_channels,
            channel_mults=channel_mults,
            num_res_blocks=num_res_blocks,
            groups=groups,
        )
        channel_mults = sizes["channel_mults"]
        arch = dict(
            base_channels=sizes["base_channels"],
            channel_mults=tuple(channel_mults),
            num_res_blocks=sizes["num_res_blocks"],
            latent_channels=latent_channels,
            temporal_compression=temporal_compression,
            groups=sizes["groups"],
            pad_mode=pad_mode,
        )
        if residual:  # stored only when on: default configs and exports stay as they were
            arch["residual"] = True
        self.encoder = Encoder(**arch)
        self.decoder = Decoder(**arch)
        self.latent_channels = latent_channels
        self.temporal_compression = temporal_compression
        self.spatial_compression = 2 ** (len(channel_mults) - 1)
        for name, value in (("tile_size", tile_size), ("tile_overlap", tile_overlap)):
            if value % self.spatial_compression:
                raise ValueError(f"{name}={value} must be a multiple of {self.spatial_compression}")
        self.config: dict[str, Any] = {
            **arch,
            "channel_mults": list(channel_mults),
            "stream_above": stream_above,
            "stream_chunk": stream_chunk,
            "stream_frames": stream_frames,
            "tile_above": tile_above,
            "tile_size": tile_size,
            "tile_overlap": tile_overlap,
        }
        self.set_latent_stats(
            [0.0] * latent_channels if latent_mean is None else latent_mean,
            [1.0] * latent_channels if latent_std is None else latent_std,
        )

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> CausalVAE:
        """Build a preset (``tiny``, ``walt``, ``walt-image``) with keyword overrides."""
        return cls(preset=name, **overrides)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> CausalVAE:
        """Rebuild from ``vae.config`` (as stored in checkpoints and exports)."""
        return cls(**config)

    # ---- latent statistics -------------------------------------------------------------
    def set_latent_stats(self, mean: list[float], std: list[float]) -> None:
        """Store per-channel latent statistics (used by ``normalize``; saved in ``config``)."""
        c = self.latent_channels
        if len(mean) != c or len(std) != c:
            raise ValueError(f"latent stats need {c} values each, got {len(mean)} and {len(std)}")
        # `not s > 0` (not `s <= 0`) also refuses NaN, which compares false both ways.
        if not all(math.isfinite(s) and s > 0 for s in std):
            raise ValueError(f"latent_std must be finite and positive, got {std}")
        if not all(math.isfinite(m) for m in mean):
            raise ValueError(f"latent_mean must be finite, got {mean}")
        self.config["latent_mean"] = [float(v) for v in mean]
        self.config["latent_std"] = [float(v) for v in std]

    def _stats(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor(self.config["latent_mean"], dtype=z.dtype, device=z.device)
        std = torch.tensor(self.config["latent_std"], dtype=z.dtype, device=z.device)
        return mean.view(1, -1, 1, 1, 1), std.view(1, -1, 1, 1, 1)

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        """(z - mean) / std per channel: the diffusion model's input scale (W.A.L.T Sec. 5)."""
        mean, std = self._stats(z)
        return (z - mean) / std

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(z)
        return z * std + mean

    # ---- shapes --------------------------------------------------------------------------
    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error unless ``x`` is (B, 3, 1 + 4k, 8m, 8n)."""
        if x.ndim != 5:
            raise ValueError(f"expected pixels (B, C, T, H, W), got shape {tuple(x.shape)}")
        _, _, t, h, w = x.shape
        s, r = self.spatial_compression, self.temporal_compression
        if (t - 1) % r:
            raise ValueError(
                f"frame count T={t} is not 1 + {r}k; trim the clip or call encode(..., pad=True)"
            )
        if h % s or w % s:
            raise ValueError(
                f"frame size {h}x{w} is not divisible by {s}; crop or call encode(..., pad=True)"
            )

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """Latent (t, h, w) for a valid pixel size."""
        return latent_size(
            frames,
            height,
            width,
            temporal_compression=self.temporal_compression,
            spatial_compression=self.spatial_compression,
        )

    # ---- encode / decode -----------------------------------------------------------------
    def _run(self, x: torch.Tensor, *, decode: bool, stream: bool) -> torch.Tensor:
        """The encoder (pixels -> moments) or decoder (latents -> pixels) on ``x``, streamed in
        temporal chunks and tiled spatially as the config says."""
        net, chunks = (self.decoder, decode_chunks) if decode else (self.encoder, encode_chunks)

        def run(piece: torch.Tensor) -> torch.Tensor:
            if stream:
                return chunks(
                    net,
                    piece,
                    temporal=self.temporal_compression,
                    chunk=self.config["stream_chunk"],
                    frame_chunk=self.config["stream_frames"],
                )
            return net(piece)[0]

        s = self.spatial_compression
        pixels_per_input = s if decode else 1  # tile sizes are in pixels
        tile_above = self.config["tile_above"]
        if tile_above and max(x.shape[3], x.shape[4]) * pixels_per_input > tile_above:
            return tiled(
                run,
                x,
                tile=self.config["tile_size"] // pixels_per_input,
                overlap=self.config["tile_overlap"] // pixels_per_input,
                scale=s if decode else 1 / s,
            )
        return run(x)

    def encode_distribution(
        self, x: torch.Tensor, *, pad: bool = False, stream: bool | None = None
    ) -> DiagonalGaussian:
        """Posterior q(z | x) for pixels ``x`` (B, 3, T, H, W) in [-1, 1].

        Args:
            x: pixels; ``T = 1 + 4k`` and ``H, W`` divisible by 8 unless ``pad``.
            pad: pad frames (repeat last) and pixels (edge) up to the next valid size instead of
                raising; crop the decode back with ``decode(z, crop_to=x.shape[2:])``.
            stream: force temporal chunking on/off; ``None`` streams above ``stream_above``
                latent frames.
        """
        if pad:
            x = pad_clip(x, temporal=self.temporal_compression, spatial=self.spatial_compression)
        self.check_input(x)
        t_lat = 1 + (x.shape[2] - 1) // self.temporal_compression
        if stream is None:
            stream = t_lat > self.config["stream_above"]
        return DiagonalGaussian(self._run(x, decode=False, stream=stream))

    def encode(
        self,
        x: torch.Tensor,
        *,
        sample: bool = False,
        generator: torch.Generator | None = None,
        pad: bool = False,
        stream: bool | None = None,
    ) -> torch.Tensor:
        """Latent (B, c, t, h, w) of pixels (B, 3, T, H, W): the posterior mean, or a sample."""
        dist = self.encode_distribution(x, pad=pad, stream=stream)
        return dist.sample(generator) if sample else dist.mode()

    def decode(
        self,
        z: torch.Tensor,
        *,
        crop_to: tuple[int, int, int] | torch.Size | None = None,
        stream: bool | None = None,
    ) -> torch.Tensor:
        """Pixels (B, 3, 1 + 4(t - 1), 8h, 8w) of latent ``z`` (B, c, t, h, w).

        Args:
            z: unnormalised latent (call ``denormalize`` first on diffusion outputs).
            crop_to: ``(T, H, W)`` to crop to, e.g. the original size of a padded clip.
            stream: force temporal chunking on/off; ``None`` streams above ``stream_above``.
        """
        if z.ndim != 5 or z.shape[1] != self.latent_channels:
            raise ValueError(
                f"expected latents (B, {self.latent_channels}, t, h, w), got shape {tuple(z.shape)}"
            )
        if stream is None:
            stream = z.shape[2] > self.config["stream_above"]
        x = self._run(z, decode=True, stream=stream)  # (B, 3, T, H, W)
        if crop_to is not None:
            t, h, w = tuple(crop_to)[-3:]
            x = x[:, :, :t, :h, :w]
        return x

    def forward(
        self, x: torch.Tensor, *, sample: bool = True, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, DiagonalGaussian]:
        """Reconstruct ``x``; returns ``(reconstruction, posterior)`` (training path, no streaming)."""
        dist = self.encode_distribution(x, stream=False)
        z = dist.sample(generator) if sample else dist.mode()
        return self.decode(z, stream=False), dist
