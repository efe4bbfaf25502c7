"""Diffusion math: noise schedules, the Gaussian training objective and frame conditioning."""

from walt.diffusion.frame_masks import (
    frame_condition,
    frame_mask_from_indices,
    generation_mask,
    make_frame_mask,
    null_frame_condition,
    sample_frame_mask,
)
from walt.diffusion.gaussian import GaussianDiffusion, LossWeighting, Prediction
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
    "rescale_zero_terminal_snr",
    "sample_frame_mask",
    "snr",
]
