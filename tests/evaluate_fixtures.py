"""Shared builders for the evaluation tests: tiny random-weight feature networks, saved as
TorchScript with the call conventions of the standard files, and tiny videos."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from data.encode import write_mp4

SIZE = 16  # frame side of the test videos (even, for yuv420p)


class FakeI3D(nn.Module):
    """StyleGAN-V's ``i3d_torchscript.pt`` call convention, random weights.

    It only accepts what the real protocol sends: uint8 videos of ``expect_frames`` frames,
    ``rescale=True`` and ``resize=True``; anything else raises, so a wrong call fails a test.
    """

    def __init__(self, *, num_features: int = 8, expect_frames: int = 16) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.expect_frames = expect_frames
        self.proj = nn.Linear(3 * 4, num_features)

    def forward(
        self,
        x: torch.Tensor,
        rescale: bool = False,
        resize: bool = False,
        return_features: bool = False,
    ) -> torch.Tensor:
        if x.dtype != torch.uint8 or x.dim() != 5 or x.shape[1] != 3:
            raise ValueError("expected a (B, 3, T, H, W) uint8 video")
        if x.shape[2] != self.expect_frames:
            raise ValueError("wrong number of frames")
        if not rescale or not resize:
            raise ValueError("this network is called with rescale=True, resize=True")
        v = x.float() / 127.5 - 1.0  # what rescale=True does: [0, 255] -> [-1, 1]
        v = F.interpolate(v, size=(v.shape[2], 8, 8), mode="trilinear", align_corners=False)
        feats = self.proj(F.adaptive_avg_pool3d(v, (4, 1, 1)).flatten(1))  # (B, D)
        return feats if return_features else feats.softmax(dim=1)


class FakeInception(nn.Module):
    """StyleGAN2-ADA's ``inception-2015-12-05.pt`` call convention, random weights: uint8
    ``(B, 3, H, W)`` in; pool features with ``return_features=True``, class probabilities
    otherwise (``no_output_bias`` drops the output bias)."""

    def __init__(self, *, num_features: int = 6, num_classes: int = 5) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.proj = nn.Linear(3 * 4, num_features)
        self.head = nn.Linear(num_features, num_classes)

    def forward(
        self,
        img: torch.Tensor,
        return_features: bool = False,
        use_fp16: bool = False,
        no_output_bias: bool = False,
    ) -> torch.Tensor:
        if img.dtype != torch.uint8 or img.dim() != 4 or img.shape[1] != 3:
            raise ValueError("expected a (B, 3, H, W) uint8 image")
        x = F.interpolate(img.float() / 255.0, size=(8, 8), mode="bilinear", align_corners=False)
        feats = self.proj(F.adaptive_avg_pool2d(x, (2, 2)).flatten(1))
        if return_features:
            return feats
        logits = feats @ self.head.weight.t()
        if not no_output_bias:
            logits = logits + self.head.bias
        return logits.softmax(dim=1)


class PairInception(nn.Module):
    """The generic convention: ``net(x)`` returns ``(features, logits)``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.proj = nn.Linear(3, 4)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.proj(x.float().mean(dim=(2, 3)) / 255.0)
        return feats, self.head(feats)


def save_script(module: nn.Module, path: Path) -> Path:
    """Script ``module`` and save it as a TorchScript archive, like the standard network files."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch marks TorchScript as deprecated
        torch.jit.script(module).save(str(path))
    return path


def moving_video(*, frames: int, level: int, seed: int, size: int = SIZE) -> np.ndarray:
    """``(T, size, size, 3)`` uint8: a random grey texture around ``level`` drifting one pixel a
    frame (grey, so 4:2:0 chroma subsampling in the mp4 loses little)."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(-40, 40, size=(size, size * 2, 1)).repeat(3, axis=2)
    out = [np.roll(texture, t, axis=1)[:, :size] + level for t in range(frames)]
    return np.clip(np.stack(out), 0, 255).astype(np.uint8)


def write_videos(folder: Path, *, count: int, frames: int, level: int, seed: int = 0) -> Path:
    """``count`` mp4 files ``v0.mp4 ...`` written with the project's mp4 writer."""
    for i in range(count):
        write_mp4(moving_video(frames=frames, level=level, seed=seed + i), folder / f"v{i}.mp4")
    return folder


def smooth_video(frames: int, *, level: int = 90, size: int = 16) -> np.ndarray:
    """A grey sinusoid (period 16 px, amplitude 30) moving one pixel a frame: small, steady
    differences between consecutive frames (about 7 / 255)."""
    x = np.arange(size)[None, None, :] + np.arange(frames)[:, None, None]  # (T, 1, W)
    wave = level + 30 * np.sin(2 * np.pi * x / 16)
    video = np.broadcast_to(wave[..., None], (frames, size, size, 3))  # (T, H, W, 3)
    return np.clip(np.round(video), 0, 255).astype(np.uint8)
