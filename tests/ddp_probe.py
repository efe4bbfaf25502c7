"""A callback for the DDP test: each rank records the sample keys it saw and its final weights."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch import Callback


class RankProbe(Callback):
    """Writes ``<out>/rank<r>.pt`` with ``keys`` (seen sample keys) and ``weights`` (backbone).

    Args:
        out: folder for the per-rank files.
    """

    def __init__(self, *, out: str) -> None:
        self.out, self.keys = Path(out), []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        for stream in batch.values():
            self.keys.extend(stream["key"])

    def on_train_end(self, trainer, pl_module) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        weights = {k: v.detach().cpu() for k, v in pl_module.backbone.state_dict().items()}
        torch.save({"keys": self.keys, "weights": weights}, self.out / f"rank{trainer.global_rank}.pt")
