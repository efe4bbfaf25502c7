"""3D-convolutional discriminator with 3D blur pooling (MAGVIT-v2, Sec. 3.2).

Residual down blocks (conv, LeakyReLU, blur-pool, conv) with channel multipliers 2,4,4,4,4,
trained from scratch. Blur pooling (an anti-aliasing [1, 2, 1]^3 filter before striding) is
MAGVIT-v2's change over StyleGAN-style strided discriminators. Images (``T = 1``) pass through
the same network: the temporal blur on a single frame keeps one frame.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class BlurPool3d(nn.Module):
    """Depthwise [1, 2, 1]^3 blur then stride 2 in T, H, W (stride 1 in T for one frame).

    Args:
        channels: number of channels (the filter is depthwise).
    """

    def __init__(self, *, channels: int) -> None:
        super().__init__()
        k1 = torch.tensor([1.0, 2.0, 1.0])
        k3 = k1[:, None, None] * k1[None, :, None] * k1[None, None, :]
        k3 = (k3 / k3.sum()).expand(channels, 1, 3, 3, 3).contiguous()
        self.register_buffer("kernel", k3, persistent=False)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        st = 2 if x.shape[2] > 1 else 1
        x = F.pad(x, (1, 1, 1, 1, 1, 1), mode="replicate")
        return F.conv3d(x, self.kernel.to(x.dtype), stride=(st, 2, 2), groups=self.channels)


class DownBlock(nn.Module):
    """Residual discriminator block that halves T, H, W.

    Args:
        in_channels: input channels.
        out_channels: output channels.
    """

    def __init__(self, *, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, out_channels, 3, padding=1)
        self.blur = BlurPool3d(channels=out_channels)
        self.conv2 = nn.Conv3d(out_channels, out_channels, 3, padding=1)
        self.skip_blur = BlurPool3d(channels=in_channels)
        self.skip = nn.Conv3d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.conv1(x), 0.2)
        h = F.leaky_relu(self.conv2(self.blur(h)), 0.2)
        # 1/sqrt(2) keeps the residual sum's variance constant (StyleGAN2-style)
        return (h + self.skip(self.skip_blur(x))) / math.sqrt(2.0)


class Discriminator3d(nn.Module):
    """Clip (B, 3, T, H, W) -> one logit per clip (B,).

    Args:
        base_channels: width unit; level widths are ``base_channels * channel_mults``.
        channel_mults: one down block per entry (MAGVIT-v2: 2,4,4,4,4).
        in_channels: pixel channels.
    """

    def __init__(
        self,
        *,
        base_channels: int = 64,
        channel_mults: list[int] | tuple[int, ...] = (2, 4, 4, 4, 4),
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        ch = base_channels
        self.conv_in = nn.Conv3d(in_channels, ch, 3, padding=1)
        blocks = []
        for mult in channel_mults:
            blocks.append(DownBlock(in_channels=ch, out_channels=base_channels * mult))
            ch = base_channels * mult
        self.blocks = nn.Sequential(*blocks)
        self.conv_out = nn.Conv3d(ch, ch, 3, padding=1)
        self.head = nn.Sequential(nn.Linear(ch, ch), nn.LeakyReLU(0.2), nn.Linear(ch, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.conv_in(x), 0.2)
        h = F.leaky_relu(self.conv_out(self.blocks(h)), 0.2)
        # global average pool: any T, H, W (videos and images share the discriminator)
        return self.head(h.mean(dim=(2, 3, 4))).squeeze(1)
