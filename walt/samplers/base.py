"""Shared sampler machinery: timestep spacing, the step API and model-output conversions.

Every sampler follows the same protocol as diffusers' schedulers::

    sampler.set_timesteps(50, device)
    for timestep in sampler.timesteps:
        out = sampler.step(model_output(x, timestep), timestep, x, generator=g)
        x = out.prev_sample

Spacings follow Lin et al. 2023, Table 2: ``"trailing"`` (default; starts at the last training
step ``T - 1``, where zero terminal SNR makes ``x_T`` pure noise), ``"leading"`` and
``"linspace"``. A step always moves to the *next timestep in the list* (``-1`` after the last).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from walt.diffusion.gaussian import GaussianDiffusion, Prediction, check_prediction
from walt.diffusion.schedules import alphas_cumprod

Spacing = Literal["trailing", "leading", "linspace"]
SPACINGS: tuple[str, ...] = ("trailing", "leading", "linspace")


@dataclass(frozen=True)
class StepOutput:
    """Result of one sampler step.

    Attributes:
        prev_sample: ``x`` at the previous (less noisy) timestep.
        pred_x0: the step's estimate of the clean sample (fed back for self-conditioning).
    """

    prev_sample: Tensor
    pred_x0: Tensor


def spaced_timesteps(
    num_train_timesteps: int, num_inference_steps: int, spacing: Spacing, steps_offset: int = 0
) -> np.ndarray:
    """Descending integer timesteps (Lin et al. 2023, Table 2), as int64 numpy array.

    trailing: ``round(arange(T, 0, -T/n)) - 1``; leading: ``arange(n) * (T // n) + offset``;
    linspace: ``round(linspace(0, T - 1, n))``.
    """
    if not 1 <= num_inference_steps <= num_train_timesteps:
        raise ValueError(
            f"num_inference_steps must be in [1, {num_train_timesteps}], got {num_inference_steps}"
        )
    n, big_t = num_inference_steps, num_train_timesteps
    if spacing == "trailing":
        steps = np.round(np.arange(big_t, 0, -big_t / n)).astype(np.int64) - 1
    elif spacing == "leading":
        steps = (np.arange(n) * (big_t // n))[::-1].astype(np.int64) + steps_offset
    elif spacing == "linspace":
        steps = np.linspace(0, big_t - 1, n).round()[::-1].astype(np.int64)
    else:
        raise ValueError(f"unknown timestep spacing {spacing!r}; expected one of {SPACINGS}")
    if steps.max() >= big_t or steps.min() < 0:
        raise ValueError(f"steps_offset={steps_offset} pushes timesteps outside [0, {big_t - 1}]")
    return steps.copy()


class Sampler(ABC):
    """Base class: holds the schedule and the timestep list; subclasses implement :meth:`step`.

    Args:
        betas: ``(T,)`` training betas (use :meth:`from_diffusion` to take them from a
            :class:`~walt.diffusion.GaussianDiffusion`).
        prediction: what the model outputs: ``"v"``, ``"eps"`` or ``"x0"``.
        num_inference_steps: initial number of sampling steps (W.A.L.T: 50); change it with
            :meth:`set_timesteps`.
        timestep_spacing: ``"trailing"`` (default), ``"leading"`` or ``"linspace"``.
        steps_offset: offset added to ``"leading"`` timesteps.
    """

    def __init__(
        self,
        *,
        betas: Tensor,
        prediction: Prediction = "v",
        num_inference_steps: int = 50,
        timestep_spacing: Spacing = "trailing",
        steps_offset: int = 0,
    ) -> None:
        self.betas = betas.to(torch.float64).cpu()
        self.alphas_cumprod = alphas_cumprod(self.betas)
        check_prediction(prediction, self.alphas_cumprod)
        if timestep_spacing not in SPACINGS:
            raise ValueError(f"unknown timestep spacing {timestep_spacing!r}; expected {SPACINGS}")
        self.prediction: Prediction = prediction
        self.timestep_spacing: Spacing = timestep_spacing
        self.steps_offset = steps_offset
        self.num_train_timesteps = int(self.betas.shape[0])
        self.set_timesteps(num_inference_steps)

    @classmethod
    def from_diffusion(cls, diffusion: GaussianDiffusion, **kwargs: object) -> Sampler:
        """Build the sampler on ``diffusion``'s betas and prediction type."""
        return cls(betas=diffusion.betas, prediction=diffusion.prediction, **kwargs)

    def set_timesteps(
        self, num_inference_steps: int, device: torch.device | str | None = None
    ) -> None:
        """Choose the ``num_inference_steps`` descending timesteps and reset any solver state."""
        steps = spaced_timesteps(
            self.num_train_timesteps, num_inference_steps, self.timestep_spacing, self.steps_offset
        )
        self.num_inference_steps = num_inference_steps
        self.timesteps = torch.from_numpy(steps).to(device)
        self._steps: list[int] = steps.tolist()
        self.reset()

    def reset(self) -> None:
        """Clear solver state; multistep samplers extend this. The base keeps the step counter."""
        self._next_index = 0

    def step_index(self, timesteps: int | Tensor) -> int:
        """Position of one timestep in :attr:`timesteps`; a clear error if it is not there."""
        value = int(timesteps)
        try:
            return self._steps.index(value)
        except ValueError:
            raise ValueError(f"timestep {value} is not in the sampler's timesteps") from None

    def previous_timestep(self, timesteps: int | Tensor) -> int:
        """The next timestep visited after ``timesteps``, or ``-1`` after the last one."""
        index = self.step_index(timesteps)
        return self._steps[index + 1] if index + 1 < len(self._steps) else -1

    def abar(self, timesteps: int) -> float:
        """``abar_t`` as a Python float (float64); ``abar_{-1} = 1`` (the clean data)."""
        return 1.0 if timesteps < 0 else float(self.alphas_cumprod[timesteps])

    def to_x0_eps(
        self, model_output: Tensor, timesteps: int, sample: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``(x0, eps)`` estimates from the model output at ``timesteps`` (see GaussianDiffusion)."""
        abar = self.abar(timesteps)
        a, s = abar**0.5, (1.0 - abar) ** 0.5
        if self.prediction == "v":
            return a * sample - s * model_output, a * model_output + s * sample
        if self.prediction == "eps":
            return (sample - s * model_output) / a, model_output
        return model_output, (sample - a * model_output) / s

    @staticmethod
    def draw_noise(like: Tensor, generator: torch.Generator | None) -> Tensor:
        """Standard normal noise shaped like ``like`` (drawn on ``like``'s device and dtype)."""
        return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)

    @abstractmethod
    def step(
        self,
        model_output: Tensor,
        timesteps: int | Tensor,
        sample: Tensor,
        *,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
    ) -> StepOutput:
        """One reverse step from ``timesteps`` to :meth:`previous_timestep`.

        Args:
            model_output: the (guided) network output at ``(sample, timesteps)``.
            timesteps: the current integer timestep, an element of :attr:`timesteps`.
            sample: current ``x_t``.
            generator: RNG for stochastic samplers.
            noise: explicit noise for stochastic samplers instead of drawing from ``generator``.
        """
