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
    ``m = guidance_min_scale`` to ``s = guidance_scale``: constant ``w = s``; linear
    ``w = m + (s - m) p``; cosine ``w = m + (s - m) (1 - cos(pi p)) / 2``.
    Increasing schedules (weak guidance while the layout forms, strong at the end) are the
    monotone schedules recommended by Wang et al. 2024, "Analysis of Classifier-Free Guidance
    Weight Schedulers"; ``guidance_reverse=True`` runs them from ``s`` down to ``m``.

    ``guidance_rescale`` is the guidance rescale of Lin et al. 2023 (Sec. 3.4, eq. 15-16), which
    restores the per-sample std of the conditional output to fight over-exposure at zero terminal
    SNR: ``guided <- phi * guided * std(cond) / std(guided) + (1 - phi) * guided``.

    Args:
        guidance_scale: ``w`` (1 = conditional model only, 0 = unconditional only).
        guidance_schedule: ``"constant"``, ``"linear"`` or ``"cosine"``.
        guidance_min_scale: scale at the start of a non-constant schedule (at the end with
            ``guidance_reverse``).
        guidance_reverse: run non-constant schedules from ``guidance_scale`` down to
            ``guidance_min_scale``.
        guidance_rescale: guidance-rescale factor ``phi`` in ``[0, 1]`` (0 = off).
        frame_guidance_scale: ``s_fp``, guidance over the frame condition ``c_fp`` (W.A.L.T's
            autoregressive guidance, App. A), separate from the label/text scale (1 = off).
            With it the output is ``e(0, 0) + s_fp (e(c_fp, 0) - e(0, 0)) + w (e(c_fp, y) -
            e(c_fp, 0))`` (the two-condition guidance of Brooks et al. 2023, InstructPix2Pix).
    """

    def __init__(
        self,
        *,
        guidance_scale: float = 1.0,
        guidance_schedule: GuidanceSchedule = "constant",
        guidance_min_scale: float = 1.0,
        guidance_reverse: bool = False,
        guidance_rescale: float = 0.0,
        frame_guidance_scale: float = 1.0,
    ) -> None:
        if guidance_schedule not in GUIDANCE_SCHEDULES:
            raise ValueError(
                f"unknown guidance_schedule {guidance_schedule!r}; expected {GUIDANCE_SCHEDULES}"
            )
        if not 0.0 <= guidance_rescale <= 1.0:
            raise ValueError(f"guidance_rescale must be in [0, 1], got {guidance_rescale}")
        self.guidance_scale = guidance_scale
        self.guidance_schedule: GuidanceSchedule = guidance_schedule
        self.guidance_min_scale = guidance_min_scale
        self.guidance_reverse = guidance_reverse
        self.guidance_rescale = guidance_rescale
        self.frame_guidance_scale = frame_guidance_scale

    def __repr__(self) -> str:
        return (
            f"ClassifierFreeGuidance(guidance_scale={self.guidance_scale}, "
            f"guidance_schedule={self.guidance_schedule!r}, "
            f"guidance_min_scale={self.guidance_min_scale}, "
            f"guidance_reverse={self.guidance_reverse}, guidance_rescale={self.guidance_rescale}, "
            f"frame_guidance_scale={self.frame_guidance_scale})"
        )

    def scale_at(self, progress: float) -> float:
        """Guidance scale ``w(p)`` at sampling progress ``p`` in ``[0, 1]``."""
        if not 0.0 <= progress <= 1.0:
            raise ValueError(f"progress must be in [0, 1], got {progress}")
        if self.guidance_schedule == "constant":
            return self.guidance_scale
        p = 1.0 - progress if self.guidance_reverse else progress
        ramp = p if self.guidance_schedule == "linear" else (1.0 - math.cos(math.pi * p)) / 2.0
        low, high = self.guidance_min_scale, self.guidance_scale
        return low + (high - low) * ramp

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
        phi = self.guidance_rescale
        if phi > 0.0:
            dims = tuple(range(1, cond.ndim))
            # Guard a constant guided output (std 0); the factor is then irrelevant up to 1e-12.
            guided_std = guided.std(dim=dims, keepdim=True).clamp_min(1e-12)
            factor = cond.std(dim=dims, keepdim=True) / guided_std
            guided = phi * guided * factor + (1.0 - phi) * guided
        return guided


def progress_of(index: int, num_inference_steps: int) -> float:
    """Progress ``p = i / (n - 1)`` of step ``i`` out of ``n`` (1.0 for a single step)."""
    if not 0 <= index < num_inference_steps:
        raise ValueError(f"step index {index} out of range for {num_inference_steps} steps")
    return index / (num_inference_steps - 1) if num_inference_steps > 1 else 1.0
