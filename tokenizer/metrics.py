"""Reconstruction metrics on pixels in [-1, 1]: PSNR and SSIM (per clip, frame-averaged)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per clip (B,) for (B, C, T, H, W) in [-1, 1] (peak-to-peak 2 -> [0, 1] scale)."""
    a, b = (x.float().clamp(-1, 1) + 1) / 2, (y.float().clamp(-1, 1) + 1) / 2
    mse = (a - b).pow(2).flatten(1).mean(dim=1).clamp_min(1e-10)
    return 10.0 * torch.log10(1.0 / mse)


def _gaussian(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    g = torch.exp(-((torch.arange(size, dtype=torch.float32) - size // 2) ** 2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SSIM (Wang et al. 2004, 11x11 Gaussian window, sigma 1.5) per clip (B,), frame-averaged."""
    b = x.shape[0]
    a = rearrange((x.float().clamp(-1, 1) + 1) / 2, "b c t h w -> (b t) c h w")
    d = rearrange((y.float().clamp(-1, 1) + 1) / 2, "b c t h w -> (b t) c h w")
    c = a.shape[1]
    size = min(11, a.shape[2], a.shape[3])
    win = _gaussian(size).to(a).expand(c, 1, size, size)

    def blur(v: torch.Tensor) -> torch.Tensor:
        return F.conv2d(v, win, groups=c)

    mu_a, mu_d = blur(a), blur(d)
    var_a = blur(a * a) - mu_a**2
    var_d = blur(d * d) - mu_d**2
    cov = blur(a * d) - mu_a * mu_d
    c1, c2 = 0.01**2, 0.03**2
    smap = ((2 * mu_a * mu_d + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_d**2 + c1) * (var_a + var_d + c2)
    )
    per_frame = smap.flatten(1).mean(dim=1)  # ((B T),)
    return rearrange(per_frame, "(b t) -> b t", b=b).mean(dim=1)
