"""Causal 3D-CNN encoder (MAGVIT-v2 layout, W.A.L.T continuous latent).

Levels of residual blocks separated by strided-conv downsampling; temporal downsampling only
in the later downsamples (MAGVIT-v2, Sec. 3.2), so early features keep full frame rate. The
head predicts the mean and log-variance of a diagonal Gaussian over ``c`` latent channels.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F

from tokenizer.network.blocks import Cache, Downsample, ResBlock, Step, run_framewise, run_steps
from tokenizer.network.causal_conv import CausalConv3d
from tokenizer.network.norm import FrameGroupNorm


def temporal_flags(levels: int, temporal_compression: int) -> list[bool]:
    """For the ``levels - 1`` resampling steps (encoder order), which ones act on time.

    The last ``log2(temporal_compression)`` steps do, i.e. time is reduced late.
    """
    n_t = int(math.log2(temporal_compression))
    if 2**n_t != temporal_compression or n_t > levels - 1:
        raise ValueError(
            f"temporal_compression={temporal_compression} must be a power of 2 and at most "
            f"2**(levels-1)={2 ** (levels - 1)}"
        )
    steps = levels - 1
    return [i >= steps - n_t for i in range(steps)]


class Encoder(nn.Module):
    """Pixels (B, 3, T, H, W) -> Gaussian parameters (B, 2c, t, h, w).

    Args:
        base_channels: channels of the first level.
        channel_mults: per-level channel multipliers; ``len - 1`` downsamples (8x for 4 levels).
        num_res_blocks: residual blocks per level.
        latent_channels: ``c``.
        temporal_compression: frame reduction (power of 2).
        groups: GroupNorm groups.
        pad_mode: causal front-padding mode.
        in_channels: pixel channels.
        logvar_init: initial bias of the log-variance head.
        residual: DC-AE residual autoencoding (Chen et al. 2024): average-pooling shortcuts
            around the downsamples and a channel-averaging shortcut onto the latent mean, so
            the encoder starts near a pooling codec and learns the residual (opt-in).
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
        in_channels: int = 3,
        logvar_init: float = -4.0,
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.residual = residual
        flags = temporal_flags(len(channel_mults), temporal_compression)
        self.first_temporal_level = flags.index(True) if True in flags else len(flags)
        ch = base_channels * channel_mults[0]
        self.conv_in = CausalConv3d(in_channels=in_channels, out_channels=ch, pad_mode=pad_mode)
        self.levels = nn.ModuleList()
        for i, mult in enumerate(channel_mults):
            out = base_channels * mult
            level = nn.ModuleDict()
            blocks = []
            for _ in range(num_res_blocks):
                blocks.append(
                    ResBlock(in_channels=ch, out_channels=out, groups=groups, pad_mode=pad_mode)
                )
                ch = out
            level["blocks"] = nn.ModuleList(blocks)
            if i < len(channel_mults) - 1:
                level["down"] = Downsample(
                    channels=ch, temporal=flags[i], pad_mode=pad_mode, residual=residual
                )
            self.levels.append(level)
        self.mid = ResBlock(in_channels=ch, out_channels=ch, groups=groups, pad_mode=pad_mode)
        self.norm_out = FrameGroupNorm(channels=ch, groups=groups)
        if residual and ch % latent_channels:
            raise ValueError(
                f"residual needs the last width ({ch}) to be a multiple of latent_channels "
                f"({latent_channels})"
            )
        self.latent_channels = latent_channels
        self.conv_out = nn.Conv3d(ch, 2 * latent_channels, kernel_size=1)
        # Start the posterior narrow (std ~ 0.14): with a unit-variance start and a small KL
        # weight, the sampled latent is mostly noise and short runs stall at a blurry mean.
        with torch.no_grad():
            self.conv_out.bias[latent_channels:].fill_(logvar_init)

    def steps(self) -> tuple[list[tuple[str, Step]], list[tuple[str, Step]]]:
        """The network before the final norm as ``(full frame rate steps, the rest)``."""
        steps: list[tuple[str, Step]] = [("conv_in", self.conv_in)]
        split = None
        for i, level in enumerate(self.levels):
            steps += [(f"l{i}b{j}", block) for j, block in enumerate(level["blocks"])]
            if i == self.first_temporal_level:
                split = len(steps)
            if "down" in level:
                steps.append((f"l{i}down", level["down"]))
        steps.append(("mid", self.mid))
        split = len(steps) if split is None else split
        return steps[:split], steps[split:]

    def forward(
        self, x: torch.Tensor, cache: Cache = None, *, frame_chunk: int | None = None
    ) -> tuple[torch.Tensor, dict]:
        """Return ``(moments, cache)``; ``moments`` is (B, 2c, t, h, w) = [mean, logvar].

        ``frame_chunk`` runs the levels before the first temporal downsample that many frames
        at a time (streaming uses 1; the result is the same).
        """
        new: dict = {}
        full_rate, rest = self.steps()
        h = run_framewise(lambda frames: full_rate, x, cache, new, frame_chunk)
        h = run_steps(rest, h, cache, new)
        moments = self.conv_out(F.silu(self.norm_out(h)))  # (B, 2c, t, h, w)
        if self.residual:
            # DC-AE's output shortcut: the mean of each group of ch / c channels onto the mean
            short = rearrange(h, "b (c g) t h w -> b c g t h w", c=self.latent_channels).mean(2)
            moments = torch.cat(
                [moments[:, : self.latent_channels] + short, moments[:, self.latent_channels :]],
                dim=1,
            )
        return moments, new
