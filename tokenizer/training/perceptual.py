"""Perceptual loss from a frozen timm backbone whose weights come from a local file.

MAGVIT-v2 adds a perceptual term (weight 0.1). We compare channel-normalised feature maps of a
timm CNN (LPIPS-style, without learned linear heads) on a few frames of each clip. Weights are
loaded from a local ``.safetensors`` / ``.pth`` path only; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from einops import rearrange
from safetensors.torch import load_file
from torch import nn

from common.checkpoint_files import read_weights_file

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a torch file (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"perceptual backbone weights not found: {path}")
    if path.suffix == ".safetensors":
        return load_file(str(path))
    state = read_weights_file(path)
    return state.get("state_dict", state) if isinstance(state, dict) else state


class PerceptualLoss(nn.Module):
    """Frozen feature-space distance between reconstructions and targets.

    Args:
        backbone: timm model name (e.g. ``"resnet18"``, ``"vgg16"``).
        weights_path: local weights for that model (required; never downloaded).
        max_frames: frames per clip fed to the 2D backbone (evenly spaced, first included).
    """

    def __init__(self, *, backbone: str, weights_path: str, max_frames: int = 4) -> None:
        super().__init__()
        self.net = timm.create_model(backbone, pretrained=False, features_only=True)
        state = load_state_dict(weights_path)
        missing, _unexpected = self.net.load_state_dict(state, strict=False)
        if missing:
            raise ValueError(
                f"weights at {weights_path} do not fit timm model {backbone!r}: "
                f"{len(missing)} missing keys, e.g. {missing[:3]}"
            )
        self.net.eval().requires_grad_(False)
        self.max_frames = max_frames
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> PerceptualLoss:
        super().train(mode)
        self.net.eval()  # frozen batch-norm statistics
        return self

    def _frames(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[2]
        idx = torch.linspace(0, t - 1, min(t, self.max_frames)).round().long().unique()
        frames = rearrange(x[:, :, idx.to(x.device)], "b c t h w -> (b t) c h w")
        return ((frames + 1) / 2 - self.mean) / self.std

    def forward(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar distance between (B, 3, T, H, W) clips in [-1, 1]."""
        feats_r = self.net(self._frames(recon))
        feats_t = self.net(self._frames(target))
        total = recon.new_zeros(())
        for fr, ft in zip(feats_r, feats_t):
            fr = fr / (fr.norm(dim=1, keepdim=True) + 1e-10)
            ft = ft / (ft.norm(dim=1, keepdim=True) + 1e-10)
            total = total + (fr - ft).pow(2).sum(dim=1).mean()
        return total
