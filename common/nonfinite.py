"""The NaN/inf guard of both training modules: skip a bad step, count it, stop after too many.

A step is skipped when its loss is non-finite, or when its loss is finite but a gradient is not
(checked after unscaling and clipping). The second case matters because norm clipping multiplies
every gradient by ``max_norm / total_norm``: one NaN gradient makes the total norm NaN and spreads
to every weight (and from there to the EMA), and the error then surfaces steps later as a NaN
loss. A skipped step leaves the weights, the optimizer state and the EMA as they were.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn
from torch.distributed.tensor import DTensor


def _local(t: Tensor) -> Tensor:
    """This rank's shard of a sharded (FSDP2) tensor; any other tensor as it is."""
    return t.to_local() if isinstance(t, DTensor) else t


def grads_finite(params: Iterable[nn.Parameter]) -> bool:
    """True when every gradient of ``params`` is finite (parameters without one are ignored).

    Sharded (DTensor) gradients are checked on this rank's shard only: the caller combines the
    ranks' answers (``WALTModule`` through ``reduce_boolean_decision``)."""
    flags = [torch.isfinite(_local(p.grad)).all() for p in params if p.grad is not None]
    return bool(torch.stack(flags).all()) if flags else True


def drop_grads(params: Iterable[nn.Parameter]) -> None:
    """Set every gradient to None: optimizers skip such parameters (no update, no state change)."""
    for p in params:
        p.grad = None


def check_finite_state(state: Mapping[str, Tensor]) -> None:
    """Raise if a floating-point tensor of ``state`` (e.g. a checkpoint's) is not finite."""
    bad = [
        k for k, v in state.items()
        if v.is_floating_point() and not torch.isfinite(_local(v)).all()
    ]
    if bad:
        raise FloatingPointError(
            f"refusing to write a checkpoint with non-finite weights: {', '.join(bad[:5])}"
            + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        )


class NonFiniteGuard(nn.Module):
    """Counts skipped steps and raises once too many come in a row.

    The counters are buffers, so they are saved in checkpoints and a resumed run keeps counting.
    ``total`` (every skipped step) is what the modules log as ``train/nonfinite_steps``.

    Args:
        max_steps: consecutive skipped steps tolerated; one more raises ``FloatingPointError``.
    """

    def __init__(self, *, max_steps: int) -> None:
        super().__init__()
        if max_steps < 0:
            raise ValueError(f"max_nonfinite_steps must be >= 0, got {max_steps}")
        self.max_steps = max_steps
        self.register_buffer("total", torch.zeros((), dtype=torch.long))
        self.register_buffer("run", torch.zeros((), dtype=torch.long))

    def record(self, finite: bool, *, what: str) -> bool:
        """Record one step; returns ``finite``. ``what`` names the culprit in the error."""
        if finite:
            self.run.zero_()
            return True
        self.total += 1
        self.run += 1
        if int(self.run) > self.max_steps:
            raise FloatingPointError(
                f"the {what} was non-finite for {int(self.run)} consecutive steps "
                f"(limit max_nonfinite_steps={self.max_steps}); lower the learning rate, check "
                "the data, or check the tokenizer's latent statistics"
            )
        return False
