"""The sampling loop: noise -> sampler steps with guidance and self-conditioning -> sample."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import torch
from torch import Tensor
from tqdm.auto import tqdm

from walt.samplers.base import Sampler, StepOutput
from walt.samplers.guidance import ClassifierFreeGuidance, progress_of


class Denoiser(Protocol):
    """What :func:`sample` calls: the network wrapped with its conditions.

    ``x_t`` is ``(B, ...)``, ``timesteps`` an integer ``(B,)`` tensor; ``self_cond`` is the previous x0
    estimate (zeros on the first step) when self-conditioning is on, else ``None``; ``uncond=True``
    asks for the output with the label and text replaced by their nulls; ``drop_frames=True``
    (passed only when frame guidance is on) also drops the frame condition ``c_fp``. Returns the
    raw model output (v, eps or x0, as the sampler's ``prediction``) shaped like ``x_t``.
    """

    def __call__(
        self, x_t: Tensor, timesteps: Tensor, *, self_cond: Tensor | None, uncond: bool,
        drop_frames: bool = False,
    ) -> Tensor: ...


StepCallback = Callable[[int, int, StepOutput], None]


def guided_output(
    denoiser: Denoiser,
    x_t: Tensor,
    timesteps: Tensor,
    *,
    self_cond: Tensor | None,
    guidance: ClassifierFreeGuidance | None,
    progress: float,
) -> Tensor:
    """One model evaluation, with classifier-free guidance when it changes the result.

    Calls ``denoiser`` once (no guidance or ``w(p) == 1``) or twice (conditional, then
    unconditional with ``uncond=True``) and combines with ``guidance.combine``.
    """
    cond = denoiser(x_t, timesteps, self_cond=self_cond, uncond=False)
    if guidance is None:
        return cond
    frames_guided = guidance.frame_guidance_scale != 1.0
    if not guidance.needs_uncond(progress) and not frames_guided:
        return cond
    uncond = denoiser(x_t, timesteps, self_cond=self_cond, uncond=True)
    out = guidance.combine(cond, uncond, progress)
    if frames_guided:
        # InstructPix2Pix-style: add s_fp (e(c_fp, 0) - e(0, 0)) - (e(c_fp, 0) - e(0, 0)), i.e.
        # the c_fp term with scale s_fp instead of 1 (W.A.L.T App. A guidance over c_fp).
        null = denoiser(x_t, timesteps, self_cond=self_cond, uncond=True, drop_frames=True)
        out = out + (guidance.frame_guidance_scale - 1.0) * (uncond - null)
    return out


@torch.no_grad()
def sample(
    denoiser: Denoiser,
    sampler: Sampler,
    shape: Sequence[int],
    *,
    num_inference_steps: int | None = None,
    guidance: ClassifierFreeGuidance | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    self_condition: bool = False,
    progress: bool = True,
    x_T: Tensor | None = None,
    callback: StepCallback | None = None,
) -> Tensor:
    """Generate samples by running ``sampler`` from pure noise.

    Args:
        denoiser: see :class:`Denoiser`.
        sampler: a :class:`~walt.samplers.base.Sampler`; its timesteps are reset here.
        shape: output shape, e.g. latent ``(B, c, t, h, w)``.
        num_inference_steps: number of sampling steps; ``None`` keeps the sampler's.
        guidance: classifier-free guidance; ``None`` for a single conditional pass.
        generator: RNG for the initial noise and stochastic samplers (must live on ``device``).
        device: device of the samples (default: ``x_T``'s, else CPU).
        dtype: dtype of the samples.
        self_condition: feed the previous step's x0 estimate as ``self_cond`` (W.A.L.T, after
            Chen et al. 2023 "Analog Bits"); the first step gets zeros, as in training.
        progress: show a tqdm progress bar.
        x_T: initial noise; drawn from ``N(0, I)`` with ``generator`` when ``None``.
        callback: called as ``callback(i, timestep, step_output)`` after each step.

    Returns:
        The final sample (the last step's ``prev_sample``), shaped ``shape``.
    """
    if x_T is None:
        x = torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)
    else:
        if tuple(x_T.shape) != tuple(shape):
            raise ValueError(f"x_T has shape {tuple(x_T.shape)}, expected {tuple(shape)}")
        x = x_T.to(device=device if device is not None else x_T.device, dtype=dtype)
    sampler.set_timesteps(
        sampler.num_inference_steps if num_inference_steps is None else num_inference_steps,
        device=x.device,
    )
    steps = [int(step) for step in sampler.timesteps]
    self_cond = torch.zeros_like(x) if self_condition else None
    for i, timestep in enumerate(tqdm(steps, desc="sampling", disable=not progress)):
        timesteps = torch.full((x.shape[0],), timestep, device=x.device, dtype=torch.long)
        output = guided_output(
            denoiser,
            x,
            timesteps,
            self_cond=self_cond,
            guidance=guidance,
            progress=progress_of(i, len(steps)),
        )
        out = sampler.step(output, timestep, x, generator=generator)
        x = out.prev_sample
        if self_condition:
            self_cond = out.pred_x0
        if callback is not None:
            callback(i, timestep, out)
    return x
