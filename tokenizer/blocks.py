"""Building blocks of the causal VAE: residual blocks, strided-conv down, depth-to-space up.

Every block's ``forward(x, cache)`` returns ``(out, cache)`` where ``cache`` is a dict of its
causal convolutions' caches (``None`` at the start of a clip), so whole networks stream.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F

from tokenizer.causal_conv import CausalConv3d
from tokenizer.norm import FrameGroupNorm

Cache = dict | None


def sub(cache: Cache, key: str):
    """The child cache ``key`` of ``cache`` (``None`` at the start of a clip)."""
    return None if cache is None else cache[key]


class ResBlock(nn.Module):
    """Pre-activation residual block: (GN, SiLU, causal 3x3x3 conv) x 2 plus a skip.

    Args:
        in_channels: input channels.
        out_channels: output channels (a 1x1x1 conv projects the skip when they differ).
        groups: GroupNorm groups.
        pad_mode: causal front-padding mode of the convolutions.
    """

    def __init__(
        self, *, in_channels: int, out_channels: int, groups: int = 32, pad_mode: str = "replicate"
    ) -> None:
        super().__init__()
        self.norm1 = FrameGroupNorm(channels=in_channels, groups=groups)
        self.conv1 = CausalConv3d(
            in_channels=in_channels, out_channels=out_channels, pad_mode=pad_mode
        )
        self.norm2 = FrameGroupNorm(channels=out_channels, groups=groups)
        self.conv2 = CausalConv3d(
            in_channels=out_channels, out_channels=out_channels, pad_mode=pad_mode
        )
        self.skip = (
            nn.Conv3d(in_channels, out_channels, kernel_size=1)
            if in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor, cache: Cache = None) -> tuple[torch.Tensor, dict]:
        h, c1 = self.conv1(F.silu(self.norm1(x)), sub(cache, "conv1"))
        h, c2 = self.conv2(F.silu(self.norm2(h)), sub(cache, "conv2"))
        return self.skip(x) + h, {"conv1": c1, "conv2": c2}


class Downsample(nn.Module):
    """Strided causal convolution (MAGVIT-v2 replaces average pooling with it).

    Args:
        channels: input and output channels.
        temporal: whether to also halve the frame count (``1 + 2t -> 1 + t``).
        pad_mode: causal front-padding mode.
    """

    def __init__(self, *, channels: int, temporal: bool, pad_mode: str = "replicate") -> None:
        super().__init__()
        self.temporal = temporal
        self.conv = CausalConv3d(
            in_channels=channels,
            out_channels=channels,
            kernel_size=3,
            stride=(2 if temporal else 1, 2, 2),
            pad_mode=pad_mode,
        )

    def forward(self, x: torch.Tensor, cache: Cache = None) -> tuple[torch.Tensor, dict]:
        out, c = self.conv(x, sub(cache, "conv"))
        return out, {"conv": c}


class Upsample(nn.Module):
    """Depth-to-space upsampling (MAGVIT-v2): a causal conv to ``s_t*2*2`` times the channels,
    then a rearrange of channels into time and space.

    After a temporal upsample the clip's first ``s_t - 1`` frames are dropped (MAGVIT-v2,
    Sec. 3.2) so ``1 + t`` frames become ``1 + s_t t``; later streaming chunks drop nothing.

    Args:
        in_channels: input channels.
        out_channels: output channels (after depth-to-space).
        temporal: whether to double the frame count as well as the spatial size.
        pad_mode: causal front-padding mode.
    """

    def __init__(
        self, *, in_channels: int, out_channels: int, temporal: bool, pad_mode: str = "replicate"
    ) -> None:
        super().__init__()
        self.st = 2 if temporal else 1
        self.conv = CausalConv3d(
            in_channels=in_channels, out_channels=out_channels * self.st * 4, pad_mode=pad_mode
        )

    def forward(self, x: torch.Tensor, cache: Cache = None) -> tuple[torch.Tensor, dict]:
        h, c = self.conv(x, sub(cache, "conv"))
        # (B, C*st*2*2, T, H, W) -> (B, C, T*st, 2H, 2W)
        h = rearrange(h, "b (c st sh sw) t h w -> b c (t st) (h sh) (w sw)", st=self.st, sh=2, sw=2)
        if cache is None and self.st > 1:
            h = h[:, :, self.st - 1 :]
        return h, {"conv": c}
