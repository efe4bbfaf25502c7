"""Stage two of Make-A-Video's recipe (Singer et al. 2022, Sec. 3.2) inside ``train.py fit``:
start a space-time U-Net from a trained 2D image U-Net (see ``docs/unet.md``).

A callback rather than a backbone argument: the 2D weights are needed once, at the start of a
fresh run, and a later ``load_from_checkpoint`` must not depend on that file still existing.
"""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info

from models.unet import inflate_from_2d, load_2d_state_dict


class InflateFrom2D(Callback):
    """Load 2D U-Net weights into ``module.backbone`` (and its EMA) when a fresh fit starts.

    Args:
        weights: the 2D model's ``walt.export`` safetensors or ``WALTModule`` checkpoint.
        prefix: key prefix inside a checkpoint (EMA weights by default).
    """

    def __init__(self, *, weights: str | Path, prefix: str = "ema.module.") -> None:
        super().__init__()
        self.weights, self.prefix = weights, prefix

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.ckpt_path is not None:
            return  # resuming: the checkpoint already holds the video weights
        state = load_2d_state_dict(self.weights, prefix=self.prefix)
        missing = inflate_from_2d(pl_module.backbone, state)
        pl_module.ema.module.load_state_dict(pl_module.backbone.state_dict())
        rank_zero_info(
            f"inflated {len(state)} tensors from {self.weights}; {len(missing)} temporal tensors "
            "start at the identity"
        )
