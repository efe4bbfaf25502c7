"""The learning-rate schedule of both training stages: linear warm-up, then cosine decay.

One formula for both the tokenizer and W.A.L.T: during warm-up, step ``s`` (0-based) trains at
``(s + 1) / warmup_steps`` of the base rate, so the first step already learns and step
``warmup_steps - 1`` reaches the full rate. After warm-up, a cosine decays the rate to
``min_lr_ratio`` at ``total_steps`` and holds it there (W.A.L.T and MAGVIT-v2 both use a cosine
schedule). ``min_lr_ratio=1`` keeps the rate constant after warm-up.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine_factor(
    step: int, *, warmup_steps: int, total_steps: int, min_lr_ratio: float
) -> float:
    """The multiplier of the base learning rate at optimizer step ``step`` (0-based)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    cosine = 0.5 * (1 + math.cos(math.pi * progress))
    return min_lr_ratio + (1 - min_lr_ratio) * cosine


class WarmupCosineLR(LambdaLR):
    """Linear warm-up, then cosine decay to ``min_lr_ratio`` of the base rate.

    Stepped once per optimizer step (Lightning's ``interval: step``); configurable through
    LightningCLI's ``LRSchedulerCallable`` (``lr_scheduler: {class_path: common.lr.WarmupCosineLR}``).

    Args:
        optimizer: the wrapped optimizer (passed by Lightning).
        warmup_steps: steps of linear warm-up (0: start at the full rate).
        total_steps: step at which the cosine reaches its floor; the rate stays there after.
        min_lr_ratio: floor of the cosine, as a fraction of the base rate (1: constant).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        *,
        warmup_steps: int = 1000,
        total_steps: int = 100_000,
        min_lr_ratio: float = 0.0,
    ) -> None:
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        if total_steps <= 0:
            raise ValueError(f"total_steps must be > 0, got {total_steps}")
        if not 0.0 <= min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
        self.warmup_steps, self.total_steps, self.min_lr_ratio = warmup_steps, total_steps, min_lr_ratio
        super().__init__(optimizer, lr_lambda=self._factor)

    def _factor(self, step: int) -> float:
        return warmup_cosine_factor(
            step,
            warmup_steps=self.warmup_steps,
            total_steps=self.total_steps,
            min_lr_ratio=self.min_lr_ratio,
        )
