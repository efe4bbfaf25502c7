"""Samplers (DDIM, DDPM, DPM-Solver++(2M)), classifier-free guidance and the sampling loop."""

from walt.samplers.base import Sampler, Spacing, StepOutput, spaced_timesteps
from walt.samplers.ddim import DDIMSampler
from walt.samplers.ddpm import DDPMSampler
from walt.samplers.dpm_solver import DPMSolverSampler
from walt.samplers.guidance import ClassifierFreeGuidance, GuidanceSchedule, progress_of
from walt.samplers.loop import Denoiser, guided_output, sample
from walt.samplers.registry import SamplerName, make_sampler, sampler_names, sampler_option_names

__all__ = [
    "ClassifierFreeGuidance",
    "DDIMSampler",
    "DDPMSampler",
    "DPMSolverSampler",
    "Denoiser",
    "GuidanceSchedule",
    "Sampler",
    "SamplerName",
    "Spacing",
    "StepOutput",
    "guided_output",
    "make_sampler",
    "progress_of",
    "sample",
    "sampler_names",
    "sampler_option_names",
    "spaced_timesteps",
]
