"""Build a sampler by name, for configs and the generation code."""

from __future__ import annotations

from typing import Literal

from walt.diffusion.gaussian import GaussianDiffusion
from walt.samplers.base import Sampler
from walt.samplers.ddim import DDIMSampler
from walt.samplers.ddpm import DDPMSampler
from walt.samplers.dpm_solver import DPMSolverSampler

SamplerName = Literal["ddim", "ddpm", "dpmpp_2m"]
SAMPLERS: dict[str, type[Sampler]] = {
    "ddim": DDIMSampler,
    "ddpm": DDPMSampler,
    "dpmpp_2m": DPMSolverSampler,
}


def make_sampler(
    name: SamplerName, diffusion: GaussianDiffusion, *, num_inference_steps: int = 50, **kwargs
) -> Sampler:
    """Sampler ``name`` on ``diffusion``'s schedule and prediction type.

    Args:
        name: ``"ddim"`` (W.A.L.T default, 50 steps), ``"ddpm"`` or ``"dpmpp_2m"``.
        diffusion: the training diffusion whose betas and prediction type to use.
        num_inference_steps: number of sampling steps.
        **kwargs: sampler-specific options (``eta``, ``variance``, ``timestep_spacing``, ...).
    """
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; expected one of {tuple(SAMPLERS)}")
    return SAMPLERS[name].from_diffusion(
        diffusion, num_inference_steps=num_inference_steps, **kwargs
    )
