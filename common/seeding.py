"""Per-step random generators: a resumed run draws exactly what an uninterrupted one would.

Both training modules reseed a generator every optimizer step from (seed, step, rank) instead of
checkpointing generator state; the same function serves both, so their draws follow one rule.
"""

from __future__ import annotations

import torch

# Large primes keep (step, rank) pairs from colliding for any realistic run length and world size.
_STEP_STRIDE, _RANK_STRIDE = 1_000_003, 7919


def step_seed(seed: int, *, step: int, rank: int = 0) -> int:
    """The seed of optimizer step ``step`` on process ``rank``."""
    if step < 0 or rank < 0:
        raise ValueError(f"step and rank must be >= 0, got step={step}, rank={rank}")
    return seed + _STEP_STRIDE * step + _RANK_STRIDE * rank


def step_generator(
    seed: int, *, step: int, rank: int = 0, device: torch.device | str = "cpu"
) -> torch.Generator:
    """A generator on ``device`` seeded with ``step_seed(seed, step=step, rank=rank)``."""
    return torch.Generator(device=device).manual_seed(step_seed(seed, step=step, rank=rank))
