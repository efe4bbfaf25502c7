"""The diffusion stage must learn the motion direction in the label, not only what a frame shows.

Latent clips hold one bump moving left or right across a 5 x 4 x 4 latent grid (the quickstart's
17 x 32 x 32 clips). Colour or shape can be learned frame by frame; direction only when the
temporal order of the latent frames survives every step from the batch to the loss (codec
normalisation, patchify, windows, position embeddings, unpatchify, the v target) and back out
of the sampler. A tiny model trained through ``Trainer.fit`` on these clips must then generate
each label's direction; any step that reverses or shuffles time makes it fail.
"""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset

from models import WindowedDiT
from tests.walt_fixtures import tiny_module, tiny_tokenizer_file
from walt.core.generation import sampling_stream

LATENT = (5, 4, 4)  # (t, h, w) of a 17 x 32 x 32 clip
LEFT, RIGHT = 0, 1
STEPS = 200


def moving_bumps(labels: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Normalized latents ``(B, 8, t, h, w)``: channel 0 holds a bump crossing the frame,
    right to left (label 0) or left to right (label 1), on the given row."""
    t, h, w = LATENT
    x = torch.linspace(0, w - 1, t)  # column of the bump in each latent frame
    cols = torch.where(labels[:, None] == RIGHT, x[None], (w - 1 - x)[None])  # (B, t)
    gy = torch.arange(h).view(1, 1, h, 1)
    gx = torch.arange(w).view(1, 1, 1, w)
    dist2 = (gx - cols[:, :, None, None]) ** 2 + (gy - rows.view(-1, 1, 1, 1)) ** 2
    z = torch.zeros(len(labels), 8, t, h, w)
    z[:, 0] = 3.0 * torch.exp(-dist2 / 1.0) - 0.5  # (B, t, h, w)
    return z


def latent_direction(z: torch.Tensor) -> torch.Tensor:
    """``(B,)`` RIGHT where channel 0's mass moves right from the first to the last frame."""
    mass = z[:, 0].clamp_min(0).sum(dim=2)  # (B, t, w): column profile per frame
    cols = torch.arange(z.shape[-1], dtype=z.dtype)
    centre = (mass * cols).sum(-1) / mass.sum(-1).clamp_min(1e-6)  # (B, t)
    return (centre[:, -1] > centre[:, 0]).long()


class _Clips(IterableDataset):
    """``steps`` batches of the same four labelled clips (two rows x two directions), as raw
    latents the way ``walt.precompute`` writes them (``mean + std * normalized``)."""

    def __init__(self, *, steps: int, mean: float, std: float) -> None:
        self.steps, self.mean, self.std = steps, mean, std
        self.labels = torch.tensor([LEFT, RIGHT, LEFT, RIGHT])
        self.rows = torch.tensor([1, 1, 2, 2])

    def __iter__(self):
        raw = moving_bumps(self.labels, self.rows) * self.std + self.mean  # (4, 8, t, h, w)
        for _ in range(self.steps):
            yield {"video": {"latents": raw, "label": self.labels}}


def test_latent_direction_reads_the_bumps():
    labels = torch.tensor([LEFT, RIGHT, RIGHT, LEFT])
    z = moving_bumps(labels, torch.tensor([0, 1, 2, 3]))
    assert latent_direction(z).tolist() == labels.tolist()
    assert latent_direction(z.flip(2)).tolist() == (1 - labels).tolist()


@pytest.mark.parametrize("frame", [0, 2, 4])
def test_each_latent_frame_stays_in_place(frame):
    """Fast check of time order through patchify, S windows, positions and unpatchify: with one
    spatial (S) block nothing mixes frames, so changing latent frame k changes output frame k
    only. A step that reverses, rolls or shuffles time moves the change to another frame."""
    torch.manual_seed(0)
    net = WindowedDiT(in_channels=8, hidden_size=32, depth=1, num_heads=2, num_classes=2,
                      patch_size=2, use_frame_cond=False, max_latent_size=LATENT,
                      spatiotemporal_window=LATENT)
    with torch.no_grad():
        for param in net.parameters():  # leave the zero (identity) initialisation
            param.normal_(std=0.2)
    x = torch.randn(2, 8, *LATENT)
    bumped = x.clone()
    bumped[:, :, frame] += 1.0
    kw = dict(class_labels=torch.tensor([LEFT, RIGHT]))
    with torch.no_grad():
        change = (net(bumped, torch.tensor([10.0, 900.0]), **kw)
                  - net(x, torch.tensor([10.0, 900.0]), **kw)).abs().amax(dim=(0, 1, 3, 4))  # (t,)
    assert change[frame] > 1e-3
    assert torch.all(change[torch.arange(LATENT[0]) != frame] == 0)


@pytest.mark.slow
def test_tiny_model_learns_direction_from_label(tmp_path):
    """~10 s on an idle 2-core CPU; minutes under load, hence slow."""
    torch.manual_seed(0)
    backbone = WindowedDiT(in_channels=8, hidden_size=128, depth=4, num_heads=4, num_classes=2,
                           use_frame_cond=False, max_latent_size=LATENT,
                           spatiotemporal_window=LATENT)
    module = tiny_module(
        tiny_tokenizer_file(tmp_path / "tok.safetensors"),  # stats: mean 0.1, std 0.5
        backbone=backbone, num_frames=17, size=32, ema_decay=0.9,
        optimizer=lambda p: torch.optim.AdamW(p, lr=2e-3),
    )
    trainer = pl.Trainer(max_steps=STEPS, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path)
    data = _Clips(steps=STEPS, mean=0.1, std=0.5)
    trainer.fit(module, DataLoader(data, batch_size=None))
    labels = torch.tensor([LEFT, RIGHT] * 8)
    z = module.generate(
        stream=sampling_stream(labels=labels), decode=False,
        sampling=module.sampling.override({"num_inference_steps": 10, "guidance_scale": 1.0}),
        generator=torch.Generator().manual_seed(1),
    )  # (16, 8, 5, 4, 4), normalized
    accuracy = (latent_direction(z) == labels).float().mean().item()
    assert accuracy >= 0.9, f"direction followed the label in {accuracy:.0%} of the samples"
