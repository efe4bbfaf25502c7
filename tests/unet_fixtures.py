"""Shared builders for the U-Net tests: tiny models and weight perturbation."""

from __future__ import annotations

import torch
from torch import nn

from models.unet import SpaceTimeUnet, Unet3D, is_temporal_key

TINY = dict(dim=8, dim_mult=(1, 2), num_res_blocks=1, attn_levels=(False, True), attn_head_dim=8,
            groups=4, max_frames=5)


def tiny_unet(cls: type = SpaceTimeUnet, **overrides) -> SpaceTimeUnet | Unet3D:
    torch.manual_seed(0)
    return cls(**{"in_channels": 3, "num_classes": 3, **TINY, **overrides})


def perturb(model: nn.Module, *, temporal_only: bool = False, scale: float = 0.2,
            seed: int = 1) -> nn.Module:
    """Add noise to the weights, so the zero / identity initialisations no longer hide layers."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not temporal_only or is_temporal_key(name):
                p.add_(torch.randn(p.shape, generator=g) * scale)
    return model


def per_frame(model: nn.Module, x: torch.Tensor, steps: torch.Tensor, **kw) -> torch.Tensor:
    """The model applied to each frame as a lone image (``t = 1``), stacked back on time."""
    frames = [model(x[:, :, i : i + 1], steps, **kw) for i in range(x.shape[2])]
    return torch.cat(frames, dim=2)
