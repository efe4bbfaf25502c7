"""Diffusion math: noise schedules, the v/eps/x0 parameterization, the Gaussian training
objective and frame-conditioning masks."""

from walt.diffusion.frame_masks import (
    frame_condition,
    frame_mask_from_indices,
    generation_mask,
    make_frame_mask,
    null_frame_condition,
    per_frame,
    sample_frame_mask,
)
from walt.diffusion.gaussian import GaussianDiffusion, LossWeighting
from walt.diffusion.parameterization import Prediction
from walt.diffusion.schedules import (
    ScheduleKind,
    alpha_sigma,
    alphas_cumprod,
    log_snr,
    make_betas,
    rescale_zero_terminal_snr,
    snr,
)

__all__ = [
    "GaussianDiffusion",
    "LossWeighting",
    "Prediction",
    "ScheduleKind",
    "alpha_sigma",
    "alphas_cumprod",
    "frame_condition",
    "frame_mask_from_indices",
    "generation_mask",
    "log_snr",
    "make_betas",
    "make_frame_mask",
    "null_frame_condition",
    "per_frame",
    "rescale_zero_terminal_snr",
    "sample_frame_mask",
    "snr",
]
