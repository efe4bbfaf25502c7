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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from typing_extensions import Required, TypedDict

from walt.diffusion.gaussian import GaussianDiffusion
from walt.diffusion.parameterization import Prediction, check_prediction, to_eps, to_x0_eps
from walt.diffusion.schedules import alphas_cumprod

Spacing = Literal["trailing", "leading", "linspace"]
NoiseFn = Callable[[], Tensor]
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


class SamplerArgs(TypedDict, total=False):
    """The constructor arguments every sampler takes (documented on :class:`Sampler`);
    subclasses accept them as ``**common: Unpack[SamplerArgs]`` next to their own options."""

    betas: Required[Tensor]
    prediction: Prediction
    num_inference_steps: int
    timestep_spacing: Spacing
    steps_offset: int
    clip_x0: float | None


class Sampler(ABC):
    """Base class: the schedule, the timestep list and the step; subclasses write the update.

    :meth:`step` converts the model output to ``(x0, eps)`` estimates (one parameterization,
    :mod:`walt.diffusion.parameterization`) and hands them to the subclass's :meth:`update`.

    Args:
        betas: ``(T,)`` training betas (use :meth:`from_diffusion` to take them from a
            :class:`~walt.diffusion.GaussianDiffusion`).
        prediction: what the model outputs: ``"v"``, ``"eps"`` or ``"x0"``.
        num_inference_steps: initial number of sampling steps (W.A.L.T: 50); change it with
            :meth:`set_timesteps`.
        timestep_spacing: ``"trailing"`` (default), ``"leading"`` or ``"linspace"``.
        steps_offset: offset added to ``"leading"`` timesteps.
        clip_x0: clamp the x0 estimate to ``[-clip_x0, clip_x0]`` (eps is re-derived from the
            clamped x0, DDIM eq. 12); ``None`` (default) for latents, which are not bounded.
    """

    # Multistep solvers must see the timesteps in order (their history is per step).
    requires_order: bool = False

    def __init__(
        self,
        *,
        betas: Tensor,
        prediction: Prediction = "v",
        num_inference_steps: int = 50,
        timestep_spacing: Spacing = "trailing",
        steps_offset: int = 0,
        clip_x0: float | None = None,
    ) -> None:
        self.betas = betas.to(torch.float64).cpu()
        self.alphas_cumprod = alphas_cumprod(self.betas)
        check_prediction(prediction, self.alphas_cumprod)
        if timestep_spacing not in SPACINGS:
            raise ValueError(f"unknown timestep spacing {timestep_spacing!r}; expected {SPACINGS}")
        if clip_x0 is not None and clip_x0 <= 0:
            raise ValueError(f"clip_x0 must be positive or None, got {clip_x0}")
        self.prediction: Prediction = prediction
        self.timestep_spacing: Spacing = timestep_spacing
        self.steps_offset = steps_offset
        self.clip_x0 = clip_x0
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

    def alpha_sigma(self, timesteps: int) -> tuple[float, float]:
        """``(alpha_t, sigma_t)`` used to read the model output; ``(1, 0)`` after the last step."""
        abar = self.abar(timesteps)
        return abar**0.5, (1.0 - abar) ** 0.5

    def to_x0_eps(
        self, model_output: Tensor, timesteps: int, sample: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``(x0, eps)`` estimates from the model output at ``timesteps``, x0 clipped if asked."""
        alpha, sigma = self.alpha_sigma(timesteps)
        x0, eps = to_x0_eps(self.prediction, model_output, sample, alpha, sigma)
        if self.clip_x0 is not None:
            x0 = x0.clamp(-self.clip_x0, self.clip_x0)
            # Re-derive eps from the clipped x0 so the direction term stays consistent (DDIM eq. 12).
            eps = to_eps("x0", x0, sample, alpha, sigma)
        return x0, eps

    @staticmethod
    def draw_noise(like: Tensor, generator: torch.Generator | None) -> Tensor:
        """Standard normal noise shaped like ``like`` (drawn on ``like``'s device and dtype)."""
        return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)

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
        index = self.step_index(timesteps)
        if self.requires_order and index != self._next_index:
            raise ValueError(
                f"{type(self).__name__} is multistep: expected timestep "
                f"{self._steps[self._next_index]} (step {self._next_index}), got "
                f"{int(timesteps)}; call set_timesteps() to restart"
            )
        current = self._steps[index]
        x0, eps = self.to_x0_eps(model_output, current, sample)

        def draw() -> Tensor:  # drawn only by updates that add noise, so the RNG stays in step
            return self.draw_noise(model_output, generator) if noise is None else noise

        prev_sample = self.update(sample, x0, eps, current, self.previous_timestep(current), draw)
        self._next_index = index + 1
        return StepOutput(prev_sample=prev_sample, pred_x0=x0)

    @abstractmethod
    def update(
        self, sample: Tensor, x0: Tensor, eps: Tensor, current: int, prev: int, noise: NoiseFn
    ) -> Tensor:
        """``x`` at timestep ``prev`` (``-1``: clean data) from ``x_current = sample``.

        Args:
            sample: ``x_t`` at timestep ``current``.
            x0: the (clipped) data estimate.
            eps: the matching noise estimate.
            current: current integer timestep.
            prev: the next timestep in the list, ``-1`` after the last.
            noise: draws the step's noise (stochastic samplers only).
        """
