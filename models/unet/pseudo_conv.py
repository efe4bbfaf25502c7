"""``PseudoConv3d``: a 2D spatial conv followed by a 1D temporal conv (Make-A-Video, Singer et al.
2022, Sec. 3.2, eq. 2).

The temporal conv starts as the identity (Dirac weights, zero bias), so a freshly inflated layer
acts frame by frame exactly like the image model it came from; video training then learns the
temporal part. Images ``(B, C, H, W)``, single frames (``T = 1``) and ``enable_time=False`` skip
the temporal conv.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


def check_image_frames(image_frames: Tensor | None, b: int, t: int) -> Tensor | None:
    """``(B, t)`` bool mask of packed image frames, checked (``None`` stays ``None``)."""
    if image_frames is None:
        return None
    if tuple(image_frames.shape) != (b, t):
        raise ValueError(f"image_frames must be ({b}, {t}), got {tuple(image_frames.shape)}")
    return image_frames.bool()


class PseudoConv3d(nn.Module):
    """Factorized ``k x k`` spatial + ``kt`` temporal convolution."""

    def __init__(
        self,
        *,
        dim_in: int,
        dim_out: int,
        kernel_size: int = 3,
        temporal_kernel_size: int | None = None,
        enable_time: bool = True,
        causal_time: bool = False,
    ) -> None:
        """Args:
        dim_in: input channels.
        dim_out: output channels.
        kernel_size: odd spatial kernel size.
        temporal_kernel_size: odd temporal kernel size (``None`` = ``kernel_size``).
        enable_time: build the temporal conv (``False`` = a 2D layer with no temporal params).
        causal_time: pad the temporal conv on the past side only (frame ``i`` sees ``<= i``).
        """
        super().__init__()
        kt = kernel_size if temporal_kernel_size is None else temporal_kernel_size
        for name, k in (("kernel_size", kernel_size), ("temporal_kernel_size", kt)):
            if k < 1 or k % 2 == 0:
                raise ValueError(f"{name} must be a positive odd number, got {k}")
        self.spatial = nn.Conv2d(dim_in, dim_out, kernel_size, padding=kernel_size // 2)
        self.causal_time = causal_time
        self.temporal = nn.Conv1d(dim_out, dim_out, kt) if enable_time else None
        if self.temporal is not None:
            nn.init.dirac_(self.temporal.weight)  # identity at init (Make-A-Video, Sec. 3.2)
            nn.init.zeros_(self.temporal.bias)

    def forward(
        self, x: Tensor, *, enable_time: bool = True, image_frames: Tensor | None = None
    ) -> Tensor:
        """Args:
        x: ``(B, C, H, W)`` images or ``(B, C, T, H, W)`` videos.
        enable_time: apply the temporal conv (when built and ``T > 1``).
        image_frames: ``(B, T)`` bool, ``True`` marks independent images packed next to video
            frames: they skip the temporal conv and give it zeros (as its padding does).

        Returns:
            ``(B, C_out, H, W)`` or ``(B, C_out, T, H, W)``.
        """
        if x.ndim == 4:
            return self.spatial(x)
        if x.ndim != 5:
            raise ValueError(f"x must be (B, C, H, W) or (B, C, T, H, W), got {tuple(x.shape)}")
        b, _, t, h, w = x.shape
        y = self.spatial(rearrange(x, "b c t h w -> (b t) c h w"))
        y = rearrange(y, "(b t) c h w -> b c t h w", b=b)  # (B, C_out, T, H, W)
        if self.temporal is None or not enable_time or t == 1:
            return y
        mask = check_image_frames(image_frames, b, t)
        seq = y if mask is None else y * (~mask)[:, None, :, None, None].to(y.dtype)
        seq = rearrange(seq, "b c t h w -> (b h w) c t")
        k = self.temporal.kernel_size[0]
        pad = (k - 1, 0) if self.causal_time else (k // 2, k // 2)
        out = self.temporal(F.pad(seq, pad))
        out = rearrange(out, "(b h w) c t -> b c t h w", b=b, h=h, w=w)
        if mask is None:
            return out
        return torch.where(mask[:, None, :, None, None], y, out)
