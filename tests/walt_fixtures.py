"""Shared builders for the diffusion-stage tests: a tiny tokenizer file, backbone and batches."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from models import WindowedDiT
from tokenizer import CausalVAE, save_tokenizer
from walt.diffusion import GaussianDiffusion
from walt.lightning import ConditionConfig, SamplingConfig, WALTModule

FRAMES, SIZE = 9, 16  # latent (3, 2, 2) with the 4x/8x tokenizer
NUM_CLASSES = 3


def tiny_tokenizer_file(path: Path, *, latent_channels: int = 8) -> Path:
    torch.manual_seed(0)
    vae = CausalVAE.from_preset("tiny", latent_channels=latent_channels)
    vae.set_latent_stats([0.1] * latent_channels, [0.5] * latent_channels)
    return save_tokenizer(vae, path)


def tiny_backbone(**overrides) -> WindowedDiT:
    kw = dict(
        in_channels=8,
        num_classes=NUM_CLASSES,
        max_latent_size=(3, 2, 2),
        spatiotemporal_window=(3, 2, 2),
    )
    return WindowedDiT.from_preset("tiny", **{**kw, **overrides})


def tiny_module(tokenizer: Path, **overrides) -> WALTModule:
    backbone = overrides.pop("backbone", None) or tiny_backbone()
    kw = dict(
        backbone=backbone,
        diffusion=GaussianDiffusion(),
        tokenizer=str(tokenizer),
        num_frames=FRAMES,
        size=SIZE,
        ema_decay=0.9,
        conditioning=ConditionConfig(),
        sampling=SamplingConfig(num_inference_steps=4),
        optimizer=lambda p: torch.optim.AdamW(p, lr=3e-3, fused=True),
    )
    return WALTModule(**{**kw, **overrides})


def clip_stream(b: int = 2, *, frames: int = FRAMES, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    pixels = torch.rand(b, 3, frames, SIZE, SIZE, generator=g) * 2 - 1
    return {
        "pixels": pixels,
        "label": torch.arange(b) % NUM_CLASSES,
        "caption": [""] * b,
        "fps": torch.full((b,), 8.0),
        "stride": torch.ones(b, dtype=torch.long),
        "key": [f"k{i}" for i in range(b)],
        "skipped": torch.zeros(1, dtype=torch.long),
    }


class RepeatBatch(Dataset):
    """The same batch ``length`` times (collated already: use ``batch_size=None``)."""

    def __init__(self, batch: dict, length: int) -> None:
        self.batch, self.length = batch, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        return self.batch


def repeat_loader(batch: dict, length: int) -> DataLoader:
    return DataLoader(RepeatBatch(batch, length), batch_size=None)


SR_SIZE = 32  # high-res pixels of the super-resolution tests: latent (3, 4, 4), low-res (3, 2, 2)


def tiny_sr_backbone(**overrides) -> WindowedDiT:
    """A tiny super-resolution backbone: low-res latent input and its noise level in AdaLN."""
    kw = dict(lowres_channels=8, num_extra_cond=1, max_latent_size=(3, 4, 4),
              spatiotemporal_window=(3, 4, 4))
    return tiny_backbone(**{**kw, **overrides})


def tiny_sr_module(tokenizer: Path, **overrides) -> WALTModule:
    from walt.lightning import SuperResolutionConfig

    kw = dict(backbone=overrides.pop("backbone", None) or tiny_sr_backbone(), size=SR_SIZE,
              super_resolution=SuperResolutionConfig())
    return tiny_module(tokenizer, **{**kw, **overrides})


def sr_stream(b: int = 2, *, frames: int = FRAMES, seed: int = 0) -> dict:
    """A high-res clip stream for the super-resolution tests."""
    g = torch.Generator().manual_seed(seed)
    return {**clip_stream(b, frames=frames, seed=seed),
            "pixels": torch.rand(b, 3, frames, SR_SIZE, SR_SIZE, generator=g) * 2 - 1}
