"""The low-resolution input of a super-resolution stage, upsampled 2x per side.

W.A.L.T's cascade (Gupta et al. 2023, Sec. 4.5) conditions each SR stage on the latent of the
stage below, upsampled by **depth-to-space**: a learned 1x1 projection to ``4c`` channels
rearranged into a 2x2 pixel shuffle. The result is concatenated to the backbone's input on
channels, like the self-conditioning estimate and ``c_fp``. Plain ``nearest`` / ``bilinear``
interpolation (per latent frame) are the alternatives, chosen by one switch.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from einops import rearrange
from torch import Tensor, nn

from common.frames import resize_frames

LowresUpsample = Literal["learned", "nearest", "bilinear"]
LOWRES_UPSAMPLE: tuple[str, ...] = get_args(LowresUpsample)
SCALE = 2  # every SR stage doubles H and W (128x224 -> 256x448 -> 512x896)


class LowresUpsampler(nn.Module):
    """``(B, c, t, h, w) -> (B, c, t, 2h, 2w)``.

    Args:
        channels: latent channels ``c`` of the low-resolution input.
        mode: ``"learned"`` (depth-to-space: linear to ``4c`` then pixel shuffle), ``"nearest"``
            or ``"bilinear"`` (fixed interpolation of each latent frame).
    """

    def __init__(self, *, channels: int, mode: LowresUpsample = "learned") -> None:
        super().__init__()
        if mode not in LOWRES_UPSAMPLE:
            raise ValueError(f"lowres_upsample must be one of {LOWRES_UPSAMPLE}, got {mode!r}")
        if channels < 1:
            raise ValueError(f"lowres_channels must be >= 1, got {channels}")
        self.channels, self.mode = channels, mode
        self.proj = nn.Linear(channels, channels * SCALE**2) if mode == "learned" else None
        if self.proj is not None:
            # Start as nearest-neighbour upsampling (every sub-pixel copies its channel), so a
            # fresh SR stage sees the low-res latent undistorted and learns to refine the shuffle.
            nn.init.zeros_(self.proj.bias)
            eye = torch.eye(channels).repeat_interleave(SCALE**2, dim=0)  # rows (c p q)
            self.proj.weight.data.copy_(eye)

    def forward(self, z: Tensor) -> Tensor:
        if z.ndim != 5 or z.shape[1] != self.channels:
            raise ValueError(f"lowres must be (B, {self.channels}, t, h, w), got {tuple(z.shape)}")
        if self.proj is None:
            return resize_frames(z, scale_factor=SCALE, mode=self.mode)  # (B, c, t, 2h, 2w)
        feats = self.proj(rearrange(z, "b c t h w -> b t h w c"))  # (B, t, h, w, 4c)
        return rearrange(
            feats, "b t h w (c p q) -> b c t (h p) (w q)", p=SCALE, q=SCALE
        )  # (B, c, t, 2h, 2w)

