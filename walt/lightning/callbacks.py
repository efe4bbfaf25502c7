"""Callbacks of the diffusion stage: periodic samples to disk and to the logger."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only
from PIL import Image

from common.media_log import log_media
from walt.media import write_samples


class SampleLogger(Callback):
    """Every ``every_n_steps`` optimizer steps, sample clips with the EMA weights and write them.

    Files go to ``<log_dir>/samples/step_XXXXXXX/`` as mp4, gif and a PNG contact sheet
    (``walt.media.write_samples``); the loggers that take media get them too
    (``common.media_log``: the mp4s and the sheet to wandb, the sheet to TensorBoard).

    Args:
        every_n_steps: sampling period in optimizer steps (0 disables).
        num_samples: clips per round; class-conditional models cycle through the labels.
        num_inference_steps: sampler steps (fewer than the paper's 50 keeps rounds cheap during
            training).
        guidance_scale: classifier-free guidance scale; None uses the module's default.
        fps: frame rate of the clips: the fps condition of fps-conditioned models, and the
            files' rate.
        seed: sampling seed, fixed so rounds are comparable across steps.
    """

    def __init__(
        self,
        *,
        every_n_steps: int = 1000,
        num_samples: int = 4,
        num_inference_steps: int = 25,
        guidance_scale: float | None = None,
        fps: float = 8.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.every_n_steps, self.num_samples = every_n_steps, num_samples
        self.num_inference_steps = num_inference_steps
        self.guidance_scale, self.fps, self.seed = guidance_scale, fps, seed
        self._last_step = -1

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args) -> None:
        step = trainer.global_step
        if self.every_n_steps <= 0 or step == 0 or step % self.every_n_steps or step == self._last_step:
            return
        self._last_step = step
        self.write_samples(trainer, pl_module, step)

    @rank_zero_only
    def write_samples(self, trainer: Trainer, pl_module: LightningModule, step: int) -> Path:
        labels = _labels(pl_module, self.num_samples)
        was_training = pl_module.training
        pl_module.eval()
        videos = pl_module.generate(
            labels=labels,
            num_samples=self.num_samples,
            fps=self.fps,  # the clip rate of fps-conditioned models, and of the files
            num_inference_steps=self.num_inference_steps,
            guidance_scale=self.guidance_scale,
            generator=torch.Generator(device=pl_module.device).manual_seed(self.seed),
        ).float().cpu()
        pl_module.train(was_training)
        out = Path(trainer.log_dir or trainer.default_root_dir) / "samples" / f"step_{step:07d}"
        names = [f"class {int(v)}" for v in labels] if labels is not None else None
        mp4s, sheet = write_samples(videos, out, labels=names, fps=self.fps)
        image = np.asarray(Image.open(sheet).convert("RGB"))  # (H, W, 3) uint8
        log_media(trainer.loggers, tag="samples", step=step, videos=mp4s, image=image)
        return out


def _labels(pl_module: LightningModule, n: int) -> torch.Tensor | None:
    num_classes = pl_module.inputs.num_classes
    if not num_classes:
        return None
    return torch.arange(n, device=pl_module.device) % num_classes
