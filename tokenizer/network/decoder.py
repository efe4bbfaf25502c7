"""Causal 3D-CNN decoder (MAGVIT-v2 layout).

Mirror of the encoder: depth-to-space upsampling (temporal in the early upsamples, dropping
the leading frames), and an adaptive GroupNorm conditioned on the latent before each
resolution level (MAGVIT-v2, Sec. 3.2).
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn
from torch.nn import functional as F

from tokenizer.network.blocks import Cache, ResBlock, Step, Upsample, run_framewise, take
from tokenizer.network.causal_conv import CausalConv3d
from tokenizer.network.encoder import temporal_flags
from tokenizer.network.norm import AdaptiveGroupNorm, FrameGroupNorm, align_time


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
        residual: DC-AE residual autoencoding (Chen et al. 2024): a channel-duplicating
            shortcut from the latent into the first conv and channel-to-space shortcuts around
            the upsamples, so the decoder learns the residual over them (opt-in).
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
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.residual = residual
        flags = temporal_flags(len(channel_mults), temporal_compression)
        ch = base_channels * channel_mults[-1]
        if residual and ch % latent_channels:
            raise ValueError(
                f"residual needs the deepest width ({ch}) to be a multiple of latent_channels "
                f"({latent_channels})"
            )
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
                    in_channels=ch,
                    out_channels=out,
                    temporal=flags[i - 1],
                    pad_mode=pad_mode,
                    residual=residual,
                )
                ch = out
            self.levels.append(level)
        self.norm_out = FrameGroupNorm(channels=ch, groups=groups)
        self.conv_out = CausalConv3d(in_channels=ch, out_channels=out_channels, pad_mode=pad_mode)
        # levels from here on keep the frame rate (after the last temporal upsample)
        temporal_levels = [
            li for li, i in enumerate(reversed(range(len(flags) + 1))) if i > 0 and flags[i - 1]
        ]
        self.full_rate_from = max(temporal_levels) + 1 if temporal_levels else 0

    def _level_steps(self, levels: range, z: torch.Tensor, first: bool) -> list[tuple[str, Step]]:
        steps: list[tuple[str, Step]] = []
        for i in levels:
            level = self.levels[i]
            steps.append((f"l{i}norm", partial(_adanorm_step, level["adanorm"], z, first)))
            steps += [(f"l{i}b{j}", block) for j, block in enumerate(level["blocks"])]
            if "up" in level:
                steps.append((f"l{i}up", level["up"]))
        return steps

    def _out_step(self, h: torch.Tensor, cache: Cache) -> tuple[torch.Tensor, object]:
        return self.conv_out(F.silu(self.norm_out(h), inplace=not torch.is_grad_enabled()), cache)

    def forward(
        self, z: torch.Tensor, cache: Cache = None, *, frame_chunk: int | None = None
    ) -> tuple[torch.Tensor, dict]:
        """Return ``(pixels, cache)``; ``cache=None`` marks the start of a clip.

        ``frame_chunk`` runs the levels after the last temporal upsample that many frames at a
        time (streaming uses 1; the result is the same).
        """
        first = cache is None
        new: dict = {}
        h, new["conv_in"] = self.conv_in(z, take(cache, "conv_in"))
        if self.residual:  # DC-AE's input shortcut: each latent channel copied ch / c times
            h = h + z.repeat_interleave(h.shape[1] // z.shape[1], dim=1)
        h, new["mid"] = self.mid(h, take(cache, "mid"))
        for key, step in self._level_steps(range(self.full_rate_from), z, first):
            h, new[key] = step(h, take(cache, key))
        zt = align_time(z, frames=h.shape[2], first=first)  # (B, c, T, h, w): a latent per frame
        tail = range(self.full_rate_from, len(self.levels))

        def make_steps(frames: slice) -> list[tuple[str, Step]]:
            return self._level_steps(tail, zt[:, :, frames], False) + [("conv_out", self._out_step)]

        return run_framewise(make_steps, h, cache, new, frame_chunk), new


def _adanorm_step(
    norm: AdaptiveGroupNorm, z: torch.Tensor, first: bool, h: torch.Tensor, cache: Cache
) -> tuple[torch.Tensor, None]:
    return norm(h, z, first=first), None
