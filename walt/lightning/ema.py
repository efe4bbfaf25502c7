"""Exponential moving average of a network's weights, built on ``torch.optim.swa_utils``."""

from __future__ import annotations

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def make_ema(model: nn.Module, *, decay: float) -> AveragedModel:
    """A frozen EMA copy of ``model``; call ``ema.update_parameters(model)`` after each step.

    Buffers are averaged too (``use_buffers=True``) so the copy is self-contained for sampling.
    """
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"ema decay must be in [0, 1), got {decay}")
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
    ema.requires_grad_(False)
    return ema
