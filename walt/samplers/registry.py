"""Build a sampler by name, for configs and the generation code.

The samplers are registered in :mod:`common.registry` (kind ``"sampler"``), the one registry of
classes that files and configs may name.
"""

from __future__ import annotations

import inspect
from typing import Any, Literal

from common.registry import register_class, registered, resolve
from walt.diffusion.gaussian import GaussianDiffusion
from walt.samplers.base import Sampler, SamplerArgs
from walt.samplers.ddim import DDIMSampler
from walt.samplers.ddpm import DDPMSampler
from walt.samplers.dpm_solver import DPMSolverSampler

SamplerName = Literal["ddim", "ddpm", "dpmpp_2m"]
register_class("sampler", DDIMSampler, name="ddim")
register_class("sampler", DDPMSampler, name="ddpm")
register_class("sampler", DPMSolverSampler, name="dpmpp_2m")


def sampler_names() -> tuple[str, ...]:
    """Names accepted by :func:`make_sampler` (the registered samplers)."""
    return tuple(registered("sampler"))


def sampler_option_names(name: SamplerName | str) -> tuple[str, ...]:
    """The options sampler ``name`` takes (its own and those every sampler takes), without the
    ones the sampling settings set themselves (``betas``, ``prediction``,
    ``num_inference_steps``)."""
    params = inspect.signature(resolve("sampler", name).__init__).parameters.values()
    own = [p.name for p in params if p.kind is p.KEYWORD_ONLY]
    return tuple(n for n in (*own, *SamplerArgs.__annotations__) if n not in _SET_ELSEWHERE)


# Sampler arguments that come from the diffusion or from SamplingConfig, never from its options.
_SET_ELSEWHERE = ("betas", "prediction", "num_inference_steps")


def make_sampler(
    name: SamplerName | str,
    diffusion: GaussianDiffusion,
    *,
    num_inference_steps: int = 50,
    **options: Any,
) -> Sampler:
    """Sampler ``name`` on ``diffusion``'s schedule and prediction type.

    Args:
        name: ``"ddim"`` (W.A.L.T default, 50 steps), ``"ddpm"``, ``"dpmpp_2m"`` or another
            registered sampler.
        diffusion: the training diffusion whose betas and prediction type to use.
        num_inference_steps: number of sampling steps.
        **options: sampler-specific options (``eta``, ``variance``, ``timestep_spacing``, ...).
    """
    cls = resolve("sampler", name)
    return cls.from_diffusion(diffusion, num_inference_steps=num_inference_steps, **options)
