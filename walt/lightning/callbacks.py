"""Callbacks of the diffusion stage: periodic samples to disk and to the logger."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only
from PIL import Image

from common.media_log import log_media
from walt.core.generation import sampling_stream
from walt.core.sr_comparison import comparison_panels
from walt.core.super_resolution import batch_lowres_latents
from walt.media import write_samples

# Sampling of a training round, over the module's SamplingConfig: fewer steps than the paper's 50
# keep rounds cheap.
PREVIEW_SAMPLING = {"num_inference_steps": 25}


def preview_sampling(pl_module: LightningModule, changes: Mapping[str, Any] | None) -> Any:
    """The module's ``SamplingConfig`` with a callback's ``sampling`` fields replaced."""
    return pl_module.checked_sampling(pl_module.sampling.override(changes))


class SampleLogger(Callback):
    """Every ``every_n_steps`` optimizer steps, sample clips with the EMA weights and write them.

    Files go to ``<log_dir>/samples/step_XXXXXXX/`` as mp4, gif and a PNG contact sheet
    (``walt.media.write_samples``); the loggers that take media get them too
    (``common.media_log``: the mp4s and the sheet to wandb, the sheet to TensorBoard).

    A super-resolution module (``module.is_super_resolution``) upsamples the low-res version of
    the step's training clips instead, and each file shows the SR comparison side by side
    (``walt.core.sr_comparison``: low-res | bicubic | SR output | ground truth).

    Args:
        every_n_steps: sampling period in optimizer steps (0 disables).
        num_samples: clips per round; class-conditional models cycle through the labels.
        sampling: fields of the module's ``SamplingConfig`` to change for the rounds, over
            ``{"num_inference_steps": 25}`` (fewer steps than the paper's 50 keep rounds cheap).
        fps: frame rate of the clips: the fps condition of fps-conditioned models, and the
            files' rate.
        seed: sampling seed, fixed so rounds are comparable across steps.
    """

    def __init__(
        self,
        *,
        every_n_steps: int = 1000,
        num_samples: int = 4,
        sampling: dict[str, Any] | None = None,
        fps: float = 8.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.every_n_steps, self.num_samples = every_n_steps, num_samples
        self.sampling = {**PREVIEW_SAMPLING, **(sampling or {})}
        self.fps, self.seed = fps, seed
        self._last_step = -1

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs=None, batch=None, *args
    ) -> None:
        step = trainer.global_step
        if self.every_n_steps <= 0 or step == 0 or step % self.every_n_steps or step == self._last_step:
            return
        self._last_step = step
        self.write_samples(trainer, pl_module, step, batch=batch)

    @rank_zero_only
    def write_samples(
        self, trainer: Trainer, pl_module: LightningModule, step: int,
        batch: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Path:
        """Sample and write one round; ``batch`` (a training batch) is needed by SR modules."""
        sr = bool(getattr(pl_module, "is_super_resolution", False))
        labels = None if sr else _labels(pl_module, self.num_samples)
        was_training = pl_module.training
        pl_module.eval()
        kw = dict(
            sampling=preview_sampling(pl_module, self.sampling),
            generator=torch.Generator(device=pl_module.device).manual_seed(self.seed),
        )
        if sr:
            videos = _sr_panels(pl_module, batch, self.num_samples, **kw)
        else:
            # self.fps: the clip rate of fps-conditioned models, and of the files
            stream = sampling_stream(labels=labels, fps=self.fps)
            videos = pl_module.generate(stream=stream, num_samples=self.num_samples, **kw)
        videos = videos.float().cpu()
        pl_module.train(was_training)
        out = Path(trainer.log_dir or trainer.default_root_dir) / "samples" / f"step_{step:07d}"
        names = [f"class {int(v)}" for v in labels] if labels is not None else None
        mp4s, sheet = write_samples(videos, out, labels=names, fps=self.fps)
        image = np.asarray(Image.open(sheet).convert("RGB"))  # (H, W, 3) uint8
        log_media(trainer.loggers, tag="samples", step=step, videos=mp4s, image=image)
        return out


@torch.no_grad()
def _sr_panels(
    pl_module: LightningModule, batch: Mapping[str, Mapping[str, Any]] | None, n: int, **kw
) -> torch.Tensor:
    """The SR comparison panels side by side, ``(B, C, T, H, 4W)``, for the first ``n`` clips of
    the batch's first stream (the labels, text and fps of those clips condition the output)."""
    if not batch:
        raise ValueError("a super-resolution SampleLogger needs the training batch")
    name, stream = next(iter(batch.items()))
    stream = _head(pl_module._with_text(stream), n)
    codec = pl_module.codec
    truth = codec.decode(codec.latents(stream))  # (B, C, T, H, W), what the tokenizer can give
    lowres = batch_lowres_latents(codec, stream, mode=pl_module.super_resolution.downsample)
    t, (h, w) = truth.shape[2], truth.shape[3:]
    # the stream's own clip rates condition fps-conditioned models
    out = pl_module.generate(stream=stream, num_frames=t, size=(h, w), lowres_latents=lowres, **kw)
    panels, _ = comparison_panels(codec.decode(lowres), out, truth)  # (B, 4, C, T, H, W)
    return torch.cat(panels.unbind(1), dim=-1)  # (B, C, T, H, 4W)


def _head(stream: Mapping[str, Any], n: int) -> dict[str, Any]:
    """The first ``n`` samples of every per-sample entry of a stream."""
    b = len(stream["key"])
    return {
        k: v[:n] if isinstance(v, torch.Tensor | list) and len(v) == b else v
        for k, v in stream.items()
    }


def _labels(pl_module: LightningModule, n: int) -> torch.Tensor | None:
    num_classes = pl_module.inputs.num_classes
    if not num_classes:
        return None
    return torch.arange(n, device=pl_module.device) % num_classes
