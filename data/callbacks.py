"""Lightning callback that logs how many bad samples the data pipeline skipped."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch


class SkippedSamplesLogger(pl.Callback):
    """Logs ``data/skipped`` (running total on this rank) and ``data/skipped_step``.

    Each stream batch carries ``skipped``: the samples its worker dropped since that worker's
    previous batch. Summing them over steps counts every skipped sample once.

    Args:
        prefix: metric-name prefix.
    """

    def __init__(self, *, prefix: str = "data") -> None:
        super().__init__()
        self.prefix = prefix
        self.total = 0

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:
        step = count_skipped(batch)
        self.total += step
        pl_module.log(f"{self.prefix}/skipped_step", float(step), on_step=True, on_epoch=False)
        pl_module.log(f"{self.prefix}/skipped", float(self.total), on_step=True, on_epoch=False)

    def state_dict(self) -> dict[str, Any]:
        return {"total": self.total}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.total = int(state_dict["total"])


def count_skipped(batch: Any) -> int:
    """Sum ``skipped`` over the streams of a batch (``None`` streams are ignored)."""
    if not isinstance(batch, dict):
        return 0
    if "skipped" in batch and isinstance(batch["skipped"], torch.Tensor):
        return int(batch["skipped"].sum())
    return sum(count_skipped(stream) for stream in batch.values() if isinstance(stream, dict))
