"""Generation quality during training, for class-labelled synthetic moving shapes.

The loss says little about whether samples follow the label: a model can reach a low loss while
it draws the right colour and a random direction. ``GenerationQuality`` samples a few clips per
class with the EMA weights every ``every_n_steps`` steps, reads them with the fixed detector of
``data.shape_detector`` and logs ``quality/{color,direction,shape,joint,moving_object}`` next to
the loss, so a run shows when (and whether) each attribute of the label is learned.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from data.class_names import class_names_from_shards
from data.shape_detector import parse_class_name, score_samples
from walt.core.generation import sampling_stream
from walt.lightning.callbacks import preview_sampling

QUALITY_KEYS: tuple[str, ...] = ("color", "direction", "shape", "joint", "moving_object")


class GenerationQuality(Callback):
    """Every ``every_n_steps`` optimizer steps, sample and score clips of every class.

    Args:
        class_names_from: a shard pattern of the synthetic pixel data (``python -m
            data.synthetic``); the class names are read from its first json member. The latent
            shards of ``walt.precompute`` do not carry them.
        every_n_steps: scoring period in optimizer steps (0 disables the callback).
        per_class: clips sampled per class each round.
        sampling: fields of the module's ``SamplingConfig`` to change for the rounds, over
            ``{"num_inference_steps": 10}`` (few steps keep a round cheap: the detector needs
            only the layout).
        batch_size: clips sampled per call, bounding memory with many classes.
        seed: sampling seed, fixed so that rounds are comparable across steps.
    """

    def __init__(
        self,
        *,
        class_names_from: str,
        every_n_steps: int = 200,
        per_class: int = 1,
        sampling: dict[str, Any] | None = None,
        batch_size: int = 32,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if every_n_steps < 0:
            raise ValueError(f"every_n_steps must be >= 0, got {every_n_steps}")
        if per_class < 1 or batch_size < 1:
            raise ValueError(
                f"per_class and batch_size must be >= 1, got {per_class} and {batch_size}"
            )
        self.class_names_from = class_names_from
        self.every_n_steps, self.per_class = every_n_steps, per_class
        self.sampling = {"num_inference_steps": 10, **(sampling or {})}
        self.batch_size, self.seed = batch_size, seed
        self.class_names: list[str] = []
        self._last_step = -1

    def _enabled(self, trainer: Trainer) -> bool:
        # Like Lightning's own checkpointing, a fast_dev_run smoke test skips the rounds.
        return self.every_n_steps > 0 and not trainer.fast_dev_run

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit" or not self._enabled(trainer):
            return
        self.class_names = class_names_from_shards(self.class_names_from)
        for name in self.class_names:
            parse_class_name(name)  # raises, naming the class, on non-synthetic class names
        num_classes = getattr(pl_module.backbone, "num_classes", 0)
        if num_classes != len(self.class_names):
            raise ValueError(
                f"class_names_from={self.class_names_from!r} lists {len(self.class_names)} "
                f"classes but the backbone has num_classes={num_classes}"
            )

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args) -> None:
        step = trainer.global_step
        if not self._enabled(trainer) or step == 0 or step % self.every_n_steps:
            return
        if step == self._last_step:
            return
        self._last_step = step
        scores = self.score(pl_module)
        pl_module.log_dict({f"quality/{k}": scores[k] for k in QUALITY_KEYS}, rank_zero_only=True)

    @torch.no_grad()
    def score(self, pl_module: LightningModule) -> dict[str, float]:
        """Sample ``per_class`` clips of every class with the EMA weights and score them."""
        labels = torch.arange(len(self.class_names)).repeat_interleave(self.per_class)
        generator = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        was_training = pl_module.training
        pl_module.eval()
        sampling = preview_sampling(pl_module, self.sampling)
        videos = [
            pl_module.generate(
                stream=sampling_stream(labels=chunk.to(pl_module.device)),
                sampling=sampling,
                generator=generator,
            ).float().cpu()  # (b, C, T, H, W)
            for chunk in labels.split(self.batch_size)
        ]
        pl_module.train(was_training)
        return score_samples(torch.cat(videos), [self.class_names[v] for v in labels])
