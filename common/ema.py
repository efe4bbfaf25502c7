"""Exponential moving average of a network's weights, shared by the tokenizer and W.A.L.T.

Both papers sample and evaluate with an EMA of the weights (MAGVIT-v2: 0.999; W.A.L.T: 0.9999).
The decay is warmed up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so short runs
are not dominated by the random initialisation. ``n`` is a buffer, so a resumed run continues the
same schedule.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_decay_at(num_updates: int, decay: float) -> float:
    """The decay of update number ``num_updates`` (0-based), warmed up towards ``decay``."""
    return min(decay, (1.0 + num_updates) / (10.0 + num_updates))


class EMA(nn.Module):
    """A frozen copy of a network whose weights follow the network's by EMA.

    The copy is ``self.module`` (state-dict keys ``ema.module.*`` inside a LightningModule). Call
    ``update(model)`` right after each optimizer step that changed ``model``, before any
    checkpoint of that step is written. Floating-point buffers are copied, not averaged (they are
    statistics or constants, not trained weights).

    Args:
        model: the network to follow; it is deep-copied.
        decay: the EMA decay after warm-up, in [0, 1).
    """

    def __init__(self, model: nn.Module, *, decay: float) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).requires_grad_(False)
        self.register_buffer("n_averaged", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """ema <- d * ema + (1 - d) * model, with ``d = ema_decay_at(n_averaged, decay)``."""
        d = ema_decay_at(int(self.n_averaged), self.decay)
        ema_params = list(self.module.parameters())
        params = [p.detach() for p in model.parameters()]
        if len(ema_params) != len(params):
            raise ValueError("the EMA copy and the model have different parameters")
        torch._foreach_lerp_(ema_params, params, 1.0 - d)
        for b_ema, b in zip(self.module.buffers(), model.buffers(), strict=True):
            b_ema.copy_(b)
        self.n_averaged += 1

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)
