"""DDIM sampler (Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models").

W.A.L.T samples with 50 deterministic DDIM steps (eta = 0).
"""

from __future__ import annotations

import torch
from torch import Tensor

from walt.diffusion.gaussian import Prediction
from walt.samplers.base import Sampler, Spacing, StepOutput


class DDIMSampler(Sampler):
    """DDIM with stochasticity ``eta`` (0: deterministic DDIM, 1: DDPM-like ancestral noise).

    Args:
        betas: ``(T,)`` training betas.
        prediction: model output type: ``"v"``, ``"eps"`` or ``"x0"``.
        num_inference_steps: number of sampling steps (W.A.L.T: 50).
        timestep_spacing: ``"trailing"`` (default), ``"leading"`` or ``"linspace"``.
        steps_offset: offset of ``"leading"`` timesteps.
        eta: DDIM's ``eta`` in eq. 16.
        clip_x0: clamp the x0 estimate to ``[-clip_x0, clip_x0]``; ``None`` (default) for latents,
            which are not bounded.
    """

    def __init__(
        self,
        *,
        betas: Tensor,
        prediction: Prediction = "v",
        num_inference_steps: int = 50,
        timestep_spacing: Spacing = "trailing",
        steps_offset: int = 0,
        eta: float = 0.0,
        clip_x0: float | None = None,
    ) -> None:
        if eta < 0:
            raise ValueError(f"eta must be >= 0, got {eta}")
        if clip_x0 is not None and clip_x0 <= 0:
            raise ValueError(f"clip_x0 must be positive or None, got {clip_x0}")
        self.eta = eta
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
        """DDIM update, Song et al. eq. 12 with ``sigma_t(eta)`` of eq. 16::

            x_prev = sqrt(abar_prev) x0^ + sqrt(1 - abar_prev - sigma^2) eps^ + sigma z
            sigma^2 = eta^2 (1 - abar_prev) / (1 - abar_t) (1 - abar_t / abar_prev)

        After the last timestep ``abar_prev = 1``, so the output is the x0 estimate.
        """
        current = int(timesteps)
        prev = self.previous_timestep(current)
        abar_t, abar_prev = self.abar(current), self.abar(prev)
        x0, eps = self.to_x0_eps(model_output, current, sample)
        if self.clip_x0 is not None:
            x0 = x0.clamp(-self.clip_x0, self.clip_x0)
            # Re-derive eps from the clipped x0 so the direction term stays consistent (DDIM eq. 12).
            eps = (sample - abar_t**0.5 * x0) / (1.0 - abar_t) ** 0.5
        variance = (1.0 - abar_prev) / (1.0 - abar_t) * (1.0 - abar_t / abar_prev)
        std = self.eta * variance**0.5
        direction = max(1.0 - abar_prev - std**2, 0.0) ** 0.5
        prev_sample = abar_prev**0.5 * x0 + direction * eps
        if std > 0:
            z = self.draw_noise(model_output, generator) if noise is None else noise
            prev_sample = prev_sample + std * z
        return StepOutput(prev_sample=prev_sample, pred_x0=x0)
