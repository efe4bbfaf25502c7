"""Learning-rate schedules configurable through LightningCLI's ``LRSchedulerCallable``."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


class WarmupCosineLR(LambdaLR):
    """Linear warmup from 0, then cosine decay to ``min_lr_ratio`` of the base rate.

    Stepped once per optimizer step (Lightning's ``interval: step``).

    Args:
        optimizer: the wrapped optimizer (passed by Lightning).
        warmup_steps: steps of linear warmup.
        total_steps: step at which the cosine reaches its floor; the rate stays there after.
        min_lr_ratio: floor of the cosine, as a fraction of the base rate.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        *,
        warmup_steps: int = 1000,
        total_steps: int = 100_000,
        min_lr_ratio: float = 0.0,
    ) -> None:
        if warmup_steps < 0 or total_steps <= 0:
            raise ValueError(f"need warmup_steps >= 0 and total_steps > 0, got {warmup_steps}, {total_steps}")
        self.warmup_steps, self.total_steps, self.min_lr_ratio = warmup_steps, total_steps, min_lr_ratio
        super().__init__(optimizer, lr_lambda=self._factor)

    def _factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * cosine
