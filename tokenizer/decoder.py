"""Causal 3D-CNN decoder (MAGVIT-v2 layout).

Mirror of the encoder: depth-to-space upsampling (temporal in the early upsamples, dropping
the leading frames), and an adaptive GroupNorm conditioned on the latent before each
resolution level (MAGVIT-v2, Sec. 3.2).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from tokenizer.blocks import Cache, ResBlock, Upsample, sub
from tokenizer.causal_conv import CausalConv3d
from tokenizer.encoder import temporal_flags
from tokenizer.norm import AdaptiveGroupNorm, FrameGroupNorm


class Decoder(nn.Module):
    """Latent (B, c, t, h, w) -> pixels (B, 3, T, H, W), ``T = 1 + s(t - 1)`` at clip start.

    Args:
        base_channels: channels of the finest level.
        channel_mults: per-level multipliers (same order as the encoder's).
        num_res_blocks: residual blocks per level.
        latent_channels: ``c``.
        temporal_compression: frame expansion (power of 2).
        groups: GroupNorm groups.
        pad_mode: causal front-padding mode.
        out_channels: pixel channels.
    """

    def __init__(
        self,
        *,
        base_channels: int,
        channel_mults: tuple[int, ...],
        num_res_blocks: int,
        latent_channels: int,
        temporal_compression: int,
        groups: int = 32,
        pad_mode: str = "replicate",
        out_channels: int = 3,
    ) -> None:
        super().__init__()
        flags = temporal_flags(len(channel_mults), temporal_compression)
        ch = base_channels * channel_mults[-1]
        self.conv_in = CausalConv3d(in_channels=latent_channels, out_channels=ch, pad_mode=pad_mode)
        self.mid = ResBlock(in_channels=ch, out_channels=ch, groups=groups, pad_mode=pad_mode)
        self.levels = nn.ModuleList()
        for i in reversed(range(len(channel_mults))):
            level = nn.ModuleDict()
            level["adanorm"] = AdaptiveGroupNorm(
                channels=ch, latent_channels=latent_channels, groups=groups
            )
            level["blocks"] = nn.ModuleList(
                ResBlock(in_channels=ch, out_channels=ch, groups=groups, pad_mode=pad_mode)
                for _ in range(num_res_blocks)
            )
            if i > 0:
                # mirrors the encoder's downsample after level i - 1; the depth-to-space conv
                # also moves to the next level's width (fewer parameters than a same-width conv)
                out = base_channels * channel_mults[i - 1]
                level["up"] = Upsample(
                    in_channels=ch, out_channels=out, temporal=flags[i - 1], pad_mode=pad_mode
                )
                ch = out
            self.levels.append(level)
        self.norm_out = FrameGroupNorm(channels=ch, groups=groups)
        self.conv_out = CausalConv3d(in_channels=ch, out_channels=out_channels, pad_mode=pad_mode)

    def forward(self, z: torch.Tensor, cache: Cache = None) -> tuple[torch.Tensor, dict]:
        """Return ``(pixels, cache)``; ``cache=None`` marks the start of a clip."""
        first = cache is None
        new: dict = {}
        h, new["conv_in"] = self.conv_in(z, sub(cache, "conv_in"))
        h, new["mid"] = self.mid(h, sub(cache, "mid"))
        for i, level in enumerate(self.levels):
            h = level["adanorm"](h, z, first=first)
            for j, block in enumerate(level["blocks"]):
                key = f"l{i}b{j}"
                h, new[key] = block(h, sub(cache, key))
            if "up" in level:
                h, new[f"l{i}up"] = level["up"](h, sub(cache, f"l{i}up"))
        out, new["conv_out"] = self.conv_out(F.silu(self.norm_out(h)), sub(cache, "conv_out"))
        return out, new
