"""DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
Probabilistic Models", Algorithm 2): a second-order multistep solver of the diffusion ODE in the
data-prediction parameterization, using the half log-SNR ``lambda = log(alpha / sigma)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from walt.diffusion.gaussian import Prediction
from walt.samplers.base import Sampler, Spacing, StepOutput


class DPMSolverSampler(Sampler):
    """Deterministic DPM-Solver++(2M); good quality in 15-25 steps, also under strong guidance.

    The first step is first order (no history yet) and so is the last one, which lands on
    ``sigma = 0`` and returns the data estimate (diffusers' ``final_sigmas_type="zero"``).

    Zero terminal SNR makes ``lambda_T = -inf``; as in diffusers, ``abar_T`` is floored at
    ``terminal_abar`` (``2^-24``, ``lambda_T ~ -8.3``) for this solver only, so step sizes stay
    finite. The floor changes the first x0 estimate by a relative ``~2^-12``.

    Args:
        betas: ``(T,)`` training betas.
        prediction: model output type: ``"v"``, ``"eps"`` or ``"x0"``.
        num_inference_steps: number of sampling steps.
        timestep_spacing: ``"trailing"`` (default), ``"leading"`` or ``"linspace"``.
        steps_offset: offset of ``"leading"`` timesteps.
        terminal_abar: floor on ``abar`` where it is exactly 0.
    """

    def __init__(
        self,
        *,
        betas: Tensor,
        prediction: Prediction = "v",
        num_inference_steps: int = 20,
        timestep_spacing: Spacing = "trailing",
        steps_offset: int = 0,
        terminal_abar: float = 2.0**-24,
    ) -> None:
        if not 0.0 < terminal_abar < 1.0:
            raise ValueError(f"terminal_abar must be in (0, 1), got {terminal_abar}")
        self.terminal_abar = terminal_abar
        super().__init__(
            betas=betas,
            prediction=prediction,
            num_inference_steps=num_inference_steps,
            timestep_spacing=timestep_spacing,
            steps_offset=steps_offset,
        )

    def reset(self) -> None:
        """Forget the previous data estimate; the next step must be the first timestep."""
        super().reset()
        self._prev_x0: Tensor | None = None
        self._prev_lambda = 0.0

    def _alpha_sigma(self, timesteps: int) -> tuple[float, float]:
        """``(alpha, sigma)`` with the terminal floor; ``(1, 0)`` after the last step."""
        if timesteps < 0:
            return 1.0, 0.0
        abar = max(float(self.alphas_cumprod[timesteps]), self.terminal_abar)
        return math.sqrt(abar), math.sqrt(1.0 - abar)

    def _data_estimate(
        self, model_output: Tensor, sample: Tensor, alpha: float, sigma: float
    ) -> Tensor:
        if self.prediction == "v":
            return alpha * sample - sigma * model_output
        if self.prediction == "eps":
            return (sample - sigma * model_output) / alpha
        return model_output

    def step(
        self,
        model_output: Tensor,
        timesteps: int | Tensor,
        sample: Tensor,
        *,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
    ) -> StepOutput:
        """One DPM-Solver++(2M) step (Lu et al. 2022, Algorithm 2), with ``h = lambda_t - lambda_s``::

            first order: x_t = (sigma_t / sigma_s) x_s - alpha_t (e^-h - 1) x0_s
            2M:          D   = (1 + 1 / (2r)) x0_s - 1 / (2r) x0_prev,  r = h_prev / h
                         x_t = (sigma_t / sigma_s) x_s - alpha_t (e^-h - 1) D

        ``generator`` and ``noise`` are unused (the solver is deterministic).
        """
        index = self.step_index(timesteps)
        if index != self._next_index:
            raise ValueError(
                f"DPM-Solver++ is multistep: expected timestep {self._steps[self._next_index]} "
                f"(step {self._next_index}), got {int(timesteps)}; call set_timesteps() to restart"
            )
        current = self._steps[index]
        prev = self.previous_timestep(current)
        alpha_s, sigma_s = self._alpha_sigma(current)
        alpha_t, sigma_t = self._alpha_sigma(prev)
        x0 = self._data_estimate(model_output, sample, alpha_s, sigma_s)
        lambda_s = math.log(alpha_s) - math.log(sigma_s)
        if prev < 0:
            # sigma_t = 0: lambda_t = +inf, e^-h = 0, and the first-order update is x0 itself.
            prev_sample = x0
        else:
            lambda_t = math.log(alpha_t) - math.log(sigma_t)
            h = lambda_t - lambda_s
            data_term = x0
            if self._prev_x0 is not None:
                r = (lambda_s - self._prev_lambda) / h
                data_term = (1.0 + 0.5 / r) * x0 - (0.5 / r) * self._prev_x0
            prev_sample = (sigma_t / sigma_s) * sample - alpha_t * math.expm1(-h) * data_term
        self._prev_x0, self._prev_lambda = x0, lambda_s
        self._next_index = index + 1
        return StepOutput(prev_sample=prev_sample, pred_x0=x0)
