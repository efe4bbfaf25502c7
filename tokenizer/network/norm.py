"""Normalisation layers that never mix frames.

A GroupNorm over (C, T, H, W) would let later frames change the statistics of earlier ones,
breaking the causality that MAGVIT-v2's tokenizer relies on (image = first latent frame). We
normalise each frame on its own instead, which is also exactly streamable.

``AdaptiveGroupNorm`` is MAGVIT-v2's decoder normalisation (Yu et al. 2023, Sec. 3.2):
GroupNorm whose scale and shift are predicted from the latent, placed before each decoder
resolution level.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def frame_group_norm(
    x: torch.Tensor, groups: int, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float
) -> torch.Tensor:
    """GroupNorm over (C, H, W) of each frame of ``x`` (B, C, T, H, W)."""
    if not torch.is_grad_enabled():
        return _frame_group_norm_inplace(x, groups, weight, bias, eps)
    b = x.shape[0]
    flat = rearrange(x, "b c t h w -> (b t) c h w")
    flat = F.group_norm(flat, groups, weight, bias, eps)
    return rearrange(flat, "(b t) c h w -> b c t h w", b=b)


def _frame_group_norm_inplace(
    x: torch.Tensor, groups: int, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float
) -> torch.Tensor:
    """Inference path: statistics from a strided view and one output buffer normalised in
    place, instead of two frame-major copies around ``F.group_norm``. Streaming decode of large
    frames is bounded by such temporaries."""
    xg = rearrange(x, "b (g c) t h w -> b g c t (h w)", g=groups)  # a view
    var, mean = torch.var_mean(xg, dim=(2, 4), keepdim=True, correction=0)  # (B, G, 1, T, 1)
    out = xg.sub(mean).mul_(torch.rsqrt(var.add_(eps)))
    out = rearrange(out, "b g c t hw -> b (g c) t hw").reshape(x.shape)  # (B, C, T, H, W)
    shape = (1, -1, 1, 1, 1)
    if weight is not None:
        out.mul_(weight.view(shape))
    return out if bias is None else out.add_(bias.view(shape))


class FrameGroupNorm(nn.Module):
    """Per-frame GroupNorm with a learned affine.

    Args:
        channels: number of channels.
        groups: number of groups (must divide ``channels``).
        eps: numerical epsilon.
    """

    def __init__(self, *, channels: int, groups: int = 32, eps: float = 1e-6) -> None:
        super().__init__()
        groups = min(groups, channels)
        if channels % groups:
            raise ValueError(f"groups={groups} must divide channels={channels}")
        self.groups, self.eps = groups, eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return frame_group_norm(x, self.groups, self.weight, self.bias, self.eps)


def align_time(z: torch.Tensor, *, frames: int, first: bool) -> torch.Tensor:
    """Repeat latent frames of ``z`` (B, c, t, h, w) onto ``frames`` decoder feature frames.

    The decoder's causal layout: at the start of a clip latent frame 0 covers one feature frame
    and every later latent frame covers ``r`` frames (``frames = 1 + r (t - 1)``); in a later
    streaming chunk every latent frame covers ``r`` frames (``frames = r t``).
    """
    t = z.shape[2]
    if first:
        rate = (frames - 1) // (t - 1) if t > 1 else 1
        expected = 1 + rate * (t - 1)
        z = torch.cat([z[:, :, :1], z[:, :, 1:].repeat_interleave(rate, dim=2)], dim=2)
    else:
        rate = frames // t
        expected = rate * t
        z = z.repeat_interleave(rate, dim=2)
    if expected != frames:
        raise ValueError(f"latent with {t} frames cannot cover {frames} feature frames")
    return z


def align_latent(
    z: torch.Tensor, *, frames: int, size: tuple[int, int], first: bool
) -> torch.Tensor:
    """Resample latent ``z`` (B, c, t, h, w) onto a decoder feature grid of ``frames x size``:
    time by :func:`align_time`, space by nearest-neighbour resizing."""
    z = align_time(z, frames=frames, first=first)
    b = z.shape[0]
    flat = rearrange(z, "b c t h w -> (b t) c h w")
    flat = F.interpolate(flat, size=size, mode="nearest")
    return rearrange(flat, "(b t) c h w -> b c t h w", b=b)


class AdaptiveGroupNorm(nn.Module):
    """Per-frame GroupNorm whose scale and shift come from the latent (MAGVIT-v2 decoder).

    Args:
        channels: feature channels to normalise.
        latent_channels: channels of the conditioning latent ``z``.
        groups: GroupNorm groups.
        eps: numerical epsilon.
    """

    def __init__(
        self, *, channels: int, latent_channels: int, groups: int = 32, eps: float = 1e-6
    ) -> None:
        super().__init__()
        self.groups, self.eps = min(groups, channels), eps
        if channels % self.groups:
            raise ValueError(f"groups={self.groups} must divide channels={channels}")
        # 1x1x1 projections keep the conditioning pointwise (hence causal and streamable);
        # initialised so that the layer starts as a plain GroupNorm (scale 1, shift 0).
        self.to_scale = nn.Conv3d(latent_channels, channels, kernel_size=1)
        self.to_shift = nn.Conv3d(latent_channels, channels, kernel_size=1)
        nn.init.zeros_(self.to_scale.weight)
        nn.init.ones_(self.to_scale.bias)
        nn.init.zeros_(self.to_shift.weight)
        nn.init.zeros_(self.to_shift.bias)

    def forward(self, x: torch.Tensor, z: torch.Tensor, *, first: bool) -> torch.Tensor:
        """Normalise ``x`` (B, C, T, H, W) conditioned on latent ``z`` (B, c, t, h, w)."""
        zz = align_latent(z, frames=x.shape[2], size=(x.shape[3], x.shape[4]), first=first)
        normed = frame_group_norm(x, self.groups, None, None, self.eps)
        if torch.is_grad_enabled():
            return normed * self.to_scale(zz) + self.to_shift(zz)
        return normed.mul_(self.to_scale(zz)).add_(self.to_shift(zz))  # inference: in place
