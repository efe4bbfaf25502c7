"""Sampler basics: timestep spacing, step API, oracle denoising, errors."""

from __future__ import annotations

import pytest
import torch

from walt.diffusion import GaussianDiffusion
from walt.samplers import (
    DDIMSampler,
    DDPMSampler,
    DPMSolverSampler,
    make_sampler,
    spaced_timesteps,
)

SHAPE = (2, 3, 2, 4, 4)
SAMPLER_CLASSES = [DDIMSampler, DDPMSampler, DPMSolverSampler]


def test_trailing_spacing_starts_at_pure_noise():
    steps = spaced_timesteps(1000, 50, "trailing")
    assert steps[0] == 999 and steps[-1] == 19 and len(steps) == 50
    assert (steps[:-1] - steps[1:] == 20).all()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((1000, 0, "trailing"), "num_inference_steps"),
        ((1000, 1001, "trailing"), "num_inference_steps"),
        ((1000, 10, "uniform"), "spacing"),
        ((1000, 10, "leading", 100), "steps_offset"),
    ],
)
def test_spacing_rejects_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        spaced_timesteps(*args)


def test_previous_timestep_and_unknown_timestep():
    sampler = DDIMSampler.from_diffusion(GaussianDiffusion(), num_inference_steps=4)
    assert sampler.timesteps.tolist() == [999, 749, 499, 249]
    assert [sampler.previous_timestep(t) for t in sampler.timesteps] == [749, 499, 249, -1]
    with pytest.raises(ValueError, match="timestep 500"):
        sampler.step(torch.zeros(SHAPE), 500, torch.zeros(SHAPE))


def oracle(diffusion: GaussianDiffusion, x0: torch.Tensor):
    """Model output that is exact for a single data point ``x0``."""

    def model(x_t: torch.Tensor, t: int) -> torch.Tensor:
        tb = torch.full((x_t.shape[0],), t)
        a, s = diffusion.coefficients(tb, x_t)
        eps = (x_t - a * x0) / s
        if diffusion.prediction == "v":
            return a * eps - s * x0
        return eps if diffusion.prediction == "eps" else x0

    return model


@pytest.mark.parametrize("cls", SAMPLER_CLASSES)
@pytest.mark.parametrize(
    ("prediction", "rescale"), [("v", True), ("x0", True), ("eps", False), ("v", False)]
)
def test_oracle_model_recovers_data(cls, prediction, rescale):
    diffusion = GaussianDiffusion(prediction=prediction, rescale_zero_snr=rescale)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(SHAPE, generator=g, dtype=torch.float64)
    x = torch.randn(SHAPE, generator=g, dtype=torch.float64)
    sampler = cls.from_diffusion(diffusion, num_inference_steps=10)
    model = oracle(diffusion, x0)
    for t in sampler.timesteps:
        out = sampler.step(model(x, int(t)), t, x, generator=g)
        x = out.prev_sample
    torch.testing.assert_close(x, x0, rtol=1e-6, atol=1e-6)


def test_deterministic_ddim_follows_the_forward_process():
    """With an exact model, DDIM (eta=0) keeps the same eps: x_prev = q_sample(x0, prev, eps)."""
    diffusion = GaussianDiffusion()
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(SHAPE, generator=g, dtype=torch.float64)
    eps = torch.randn(SHAPE, generator=g, dtype=torch.float64)
    sampler = DDIMSampler.from_diffusion(diffusion, num_inference_steps=5)
    t, prev = 599, 399
    x_t = diffusion.q_sample(x0, torch.full((2,), t), eps)
    out = sampler.step(oracle(diffusion, x0)(x_t, t), t, x_t)
    torch.testing.assert_close(out.prev_sample, diffusion.q_sample(x0, torch.full((2,), prev), eps))
    torch.testing.assert_close(out.pred_x0, x0)


def test_ddim_clip_and_last_step_returns_x0():
    sampler = DDIMSampler.from_diffusion(GaussianDiffusion(), num_inference_steps=5, clip_x0=0.5)
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2))
    out = sampler.step(torch.randn(SHAPE), sampler.timesteps[-1], x)
    assert out.pred_x0.abs().max() <= 0.5
    torch.testing.assert_close(out.prev_sample, out.pred_x0)


@pytest.mark.parametrize("variance", ["small", "large"])
def test_ddpm_noise_scale(variance):
    """The injected noise has the posterior (small) or beta (large) variance."""
    diffusion = GaussianDiffusion()
    sampler = DDPMSampler.from_diffusion(diffusion, num_inference_steps=10, variance=variance)
    x = torch.zeros(SHAPE, dtype=torch.float64)
    t = int(sampler.timesteps[3])
    prev = sampler.previous_timestep(t)
    z = torch.ones(SHAPE, dtype=torch.float64)
    mean = sampler.step(torch.zeros(SHAPE, dtype=torch.float64), t, x, noise=0 * z).prev_sample
    noisy = sampler.step(torch.zeros(SHAPE, dtype=torch.float64), t, x, noise=z).prev_sample
    abar_t, abar_prev = sampler.abar(t), sampler.abar(prev)
    beta = 1 - abar_t / abar_prev
    var = beta * (1 - abar_prev) / (1 - abar_t) if variance == "small" else beta
    torch.testing.assert_close(noisy - mean, torch.full(SHAPE, var**0.5, dtype=torch.float64))


def test_dpm_solver_requires_in_order_steps_and_resets():
    sampler = DPMSolverSampler.from_diffusion(GaussianDiffusion(), num_inference_steps=5)
    x = torch.randn(SHAPE)
    sampler.step(torch.zeros(SHAPE), sampler.timesteps[0], x)
    with pytest.raises(ValueError, match="multistep"):
        sampler.step(torch.zeros(SHAPE), sampler.timesteps[2], x)
    sampler.set_timesteps(5)
    sampler.step(torch.zeros(SHAPE), sampler.timesteps[0], x)  # restarts cleanly


@pytest.mark.parametrize("cls", SAMPLER_CLASSES)
def test_samplers_reject_eps_at_zero_terminal_snr(cls):
    betas = GaussianDiffusion().betas
    with pytest.raises(ValueError, match="zero terminal SNR"):
        cls(betas=betas, prediction="eps")


def test_make_sampler():
    diffusion = GaussianDiffusion()
    ddim = make_sampler("ddim", diffusion, eta=0.3)
    assert isinstance(ddim, DDIMSampler) and ddim.eta == 0.3 and len(ddim.timesteps) == 50
    assert isinstance(make_sampler("dpmpp_2m", diffusion, num_inference_steps=20), DPMSolverSampler)
    with pytest.raises(ValueError, match="unknown sampler"):
        make_sampler("euler", diffusion)


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (DDIMSampler, dict(eta=-1.0), "eta"),
        (DDIMSampler, dict(clip_x0=0.0), "clip_x0"),
        (DDPMSampler, dict(variance="learned"), "variance"),
        (DPMSolverSampler, dict(terminal_abar=0.0), "terminal_abar"),
        (DDIMSampler, dict(timestep_spacing="uniform"), "spacing"),
    ],
)
def test_bad_sampler_arguments(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls.from_diffusion(GaussianDiffusion(), **kwargs)
