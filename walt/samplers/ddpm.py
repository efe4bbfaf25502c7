"""Ancestral DDPM sampler (Ho, Jain & Abbeel 2020) on a strided timestep list."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from walt.diffusion.gaussian import Prediction
from walt.samplers.base import Sampler, Spacing, StepOutput

Variance = Literal["small", "large"]


class DDPMSampler(Sampler):
    """Ancestral sampling from the posterior ``q(x_prev | x_t, x0^)``.

    With fewer steps than training steps, the per-step ``alpha = abar_t / abar_prev`` and
    ``beta = 1 - alpha`` of the strided chain are used (Nichol & Dhariwal 2021, Sec. 4).

    Args:
        betas: ``(T,)`` training betas.
        prediction: model output type: ``"v"``, ``"eps"`` or ``"x0"``.
        num_inference_steps: number of sampling steps.
        timestep_spacing: ``"trailing"`` (default), ``"leading"`` or ``"linspace"``.
        steps_offset: offset of ``"leading"`` timesteps.
        variance: ``"small"`` (posterior variance ``beta~``, Ho et al. eq. 7) or ``"large"``
            (``beta``); Ho et al. Sec. 3.2 found both similar.
        clip_x0: clamp the x0 estimate to ``[-clip_x0, clip_x0]``; ``None`` for latents.
    """

    def __init__(
        self,
        *,
        betas: Tensor,
        prediction: Prediction = "v",
        num_inference_steps: int = 50,
        timestep_spacing: Spacing = "trailing",
        steps_offset: int = 0,
        variance: Variance = "small",
        clip_x0: float | None = None,
    ) -> None:
        if variance not in ("small", "large"):
            raise ValueError(f"unknown variance {variance!r}; expected 'small' or 'large'")
        if clip_x0 is not None and clip_x0 <= 0:
            raise ValueError(f"clip_x0 must be positive or None, got {clip_x0}")
        self.variance: Variance = variance
        self.clip_x0 = clip_x0
        super().__init__(
            betas=betas,
            prediction=prediction,
            num_inference_steps=num_inference_steps,
            timestep_spacing=timestep_spacing,
            steps_offset=steps_offset,
        )

    def step(
        self,
        model_output: Tensor,
        timesteps: int | Tensor,
        sample: Tensor,
        *,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
    ) -> StepOutput:
        """Ho et al. eq. 6/7: ``x_prev = mu~(x_t, x0^) + sqrt(var) z`` with::

            mu~ = sqrt(abar_prev) beta_t / (1 - abar_t) x0^
                  + sqrt(alpha_t) (1 - abar_prev) / (1 - abar_t) x_t
            beta~ = (1 - abar_prev) / (1 - abar_t) beta_t

        No noise is added after the last timestep (``abar_prev = 1``, ``beta~ = 0``).
        """
        current = int(timesteps)
        prev = self.previous_timestep(current)
        abar_t, abar_prev = self.abar(current), self.abar(prev)
        alpha_t = abar_t / abar_prev
        beta_t = 1.0 - alpha_t
        x0, _ = self.to_x0_eps(model_output, current, sample)
        if self.clip_x0 is not None:
            x0 = x0.clamp(-self.clip_x0, self.clip_x0)
        x0_coef = abar_prev**0.5 * beta_t / (1.0 - abar_t)
        xt_coef = alpha_t**0.5 * (1.0 - abar_prev) / (1.0 - abar_t)
        prev_sample = x0_coef * x0 + xt_coef * sample
        if prev >= 0:
            var = (
                (1.0 - abar_prev) / (1.0 - abar_t) * beta_t if self.variance == "small" else beta_t
            )
            z = self.draw_noise(model_output, generator) if noise is None else noise
            prev_sample = prev_sample + var**0.5 * z
        return StepOutput(prev_sample=prev_sample, pred_x0=x0)
