"""Repeated random draws: the W.A.L.T paper reports each metric as mean ± std over draws.

A draw picks ``draw_size`` samples without replacement from each set (seeded, so a run is
repeatable); the metric is computed on every draw and summarised as the mean and the population
standard deviation over the draws (``numpy.std``, as StyleGAN-V's ``num_runs`` does). With
``draw_size`` equal to the whole set every draw is the same and the std is 0.
"""

from __future__ import annotations

import math

import torch

from walt.evaluate.frechet import frechet_distance


def draw_indices(
    total: int, *, draw_size: int | None, num_draws: int, generator: torch.Generator, name: str
) -> list[torch.Tensor]:
    """``num_draws`` sorted index sets of ``draw_size`` out of ``range(total)``.

    Args:
        total: samples available.
        draw_size: samples per draw (``None``: all of them).
        num_draws: how many draws.
        generator: the seeded random source (shared by every set of one run).
        name: what is drawn from, for error messages.
    """
    if num_draws < 1:
        raise ValueError(f"num_draws must be >= 1, got {num_draws}")
    size = total if draw_size is None else draw_size
    if size < 1 or size > total:
        raise ValueError(f"draw_size must be in [1, {total}] ({total} usable {name}), got {size}")
    return [
        torch.randperm(total, generator=generator)[:size].sort().values for _ in range(num_draws)
    ]


def summarize(values: list[float]) -> dict:
    """``{"mean", "std", "draws"}`` of per-draw values (population std)."""
    if not values:
        raise ValueError("no values to summarise")
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return {"mean": mean, "std": std, "draws": list(values)}


def frechet_draws(
    generated: torch.Tensor,
    reference: torch.Tensor,
    *,
    draw_size: int | None,
    num_draws: int,
    seed: int,
) -> dict:
    """Fréchet distance between features of generated and reference samples, over draws."""
    generator = torch.Generator().manual_seed(seed)
    gen = draw_indices(
        len(generated),
        draw_size=draw_size,
        num_draws=num_draws,
        generator=generator,
        name="generated samples",
    )
    ref = draw_indices(
        len(reference),
        draw_size=draw_size,
        num_draws=num_draws,
        generator=generator,
        name="reference samples",
    )
    return summarize([frechet_distance(reference[r], generated[g]) for g, r in zip(gen, ref)])
