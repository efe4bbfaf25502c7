"""Gradient clipping that also works for fused optimizers (the configs' fused AdamW).

Lightning refuses to clip for optimizers that unscale gradients inside their step (fused ones)
under mixed precision. That matters only with a loss scaler (``16-mixed``): in ``32-true`` and
``bf16-mixed`` the gradients are already true, so they are clipped here directly. With a scaler
Lightning's own path runs (and refuses).
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch


def clip_gradients(module: pl.LightningModule, optimizer: torch.optim.Optimizer,
                   value: float | None, algorithm: str | None) -> None:
    """Clip ``optimizer``'s gradients to ``value`` by ``algorithm`` (``"norm"`` or ``"value"``)."""
    fused = getattr(optimizer, "_step_supports_amp_scaling", False)
    if not (fused and value and getattr(module.trainer.precision_plugin, "scaler", None) is None):
        module.clip_gradients(optimizer, value, algorithm)
        return
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if algorithm == "value":
        torch.nn.utils.clip_grad_value_(params, value)
    else:
        torch.nn.utils.clip_grad_norm_(params, value)
