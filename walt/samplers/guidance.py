"""Classifier-free guidance (Ho & Salimans 2022) with a guidance-scale schedule.

Guidance lives on the sampler side: the denoiser callable is asked for a conditional and an
unconditional output (``uncond=True`` replaces every guided condition by its null: class ->
null class, text -> empty/null embedding, frame condition ``c_fp`` -> all-zero mask, which is
W.A.L.T's guidance over ``c_fp`` for autoregressive generation), and this module combines them.
"""

from __future__ import annotations

import math
from typing import Literal

from torch import Tensor

GuidanceSchedule = Literal["constant", "linear", "cosine"]
GUIDANCE_SCHEDULES: tuple[str, ...] = ("constant", "linear", "cosine")


class ClassifierFreeGuidance:
    """``guided = uncond + w(p) (cond - uncond)`` with ``p`` the sampling progress in ``[0, 1]``.

    ``p = 0`` is the first (noisiest) step and ``p = 1`` the last. Schedules ramp from
    ``min_scale`` to ``scale``: constant ``w = scale``; linear ``w = min_scale + (scale -
    min_scale) p``; cosine ``w = min_scale + (scale - min_scale) (1 - cos(pi p)) / 2``.
    Increasing schedules (weak guidance while the layout forms, strong at the end) are the
    monotone schedules recommended by Wang et al. 2024, "Analysis of Classifier-Free Guidance
    Weight Schedulers"; ``reverse=True`` runs them from ``scale`` down to ``min_scale``.

    ``rescale`` is the guidance rescale of Lin et al. 2023 (Sec. 3.4, eq. 15-16), which restores
    the per-sample std of the conditional output to fight over-exposure at zero terminal SNR:
    ``guided <- phi * guided * std(cond) / std(guided) + (1 - phi) * guided``.

    Args:
        scale: guidance scale ``w`` (1 = conditional model only, 0 = unconditional only).
        schedule: ``"constant"``, ``"linear"`` or ``"cosine"``.
        min_scale: scale at the start of a non-constant schedule (at the end with ``reverse``).
        reverse: run non-constant schedules from ``scale`` down to ``min_scale``.
        rescale: guidance-rescale factor ``phi`` in ``[0, 1]`` (0 = off).
    """

    def __init__(
        self,
        *,
        scale: float = 1.0,
        schedule: GuidanceSchedule = "constant",
        min_scale: float = 1.0,
        reverse: bool = False,
        rescale: float = 0.0,
    ) -> None:
        if schedule not in GUIDANCE_SCHEDULES:
            raise ValueError(
                f"unknown guidance schedule {schedule!r}; expected {GUIDANCE_SCHEDULES}"
            )
        if not 0.0 <= rescale <= 1.0:
            raise ValueError(f"rescale must be in [0, 1], got {rescale}")
        self.scale = scale
        self.schedule: GuidanceSchedule = schedule
        self.min_scale = min_scale
        self.reverse = reverse
        self.rescale = rescale

    def __repr__(self) -> str:
        return (
            f"ClassifierFreeGuidance(scale={self.scale}, schedule={self.schedule!r}, "
            f"min_scale={self.min_scale}, reverse={self.reverse}, rescale={self.rescale})"
        )

    def scale_at(self, progress: float) -> float:
        """Guidance scale ``w(p)`` at sampling progress ``p`` in ``[0, 1]``."""
        if not 0.0 <= progress <= 1.0:
            raise ValueError(f"progress must be in [0, 1], got {progress}")
        if self.schedule == "constant":
            return self.scale
        p = 1.0 - progress if self.reverse else progress
        ramp = p if self.schedule == "linear" else (1.0 - math.cos(math.pi * p)) / 2.0
        return self.min_scale + (self.scale - self.min_scale) * ramp

    def needs_uncond(self, progress: float) -> bool:
        """Whether the unconditional pass changes the result (``w != 1``) at ``progress``."""
        return self.scale_at(progress) != 1.0

    def combine(self, cond: Tensor, uncond: Tensor, progress: float) -> Tensor:
        """Guided model output ``uncond + w (cond - uncond)``, optionally std-rescaled."""
        if cond.shape != uncond.shape:
            raise ValueError(
                f"cond and uncond outputs differ in shape: {tuple(cond.shape)} vs {tuple(uncond.shape)}"
            )
        guided = uncond + self.scale_at(progress) * (cond - uncond)
        if self.rescale > 0.0:
            dims = tuple(range(1, cond.ndim))
            # Guard a constant guided output (std 0); the factor is then irrelevant up to 1e-12.
            guided_std = guided.std(dim=dims, keepdim=True).clamp_min(1e-12)
            factor = cond.std(dim=dims, keepdim=True) / guided_std
            guided = self.rescale * guided * factor + (1.0 - self.rescale) * guided
        return guided


def progress_of(index: int, num_inference_steps: int) -> float:
    """Progress ``p = i / (n - 1)`` of step ``i`` out of ``n`` (1.0 for a single step)."""
    if not 0 <= index < num_inference_steps:
        raise ValueError(f"step index {index} out of range for {num_inference_steps} steps")
    return index / (num_inference_steps - 1) if num_inference_steps > 1 else 1.0
