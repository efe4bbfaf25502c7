"""One parameterization module serves the objective and every sampler."""

from __future__ import annotations

import pytest
import torch

from walt.diffusion import GaussianDiffusion
from walt.diffusion.parameterization import target, to_eps, to_v, to_x0, to_x0_eps, velocity
from walt.samplers import make_sampler


@pytest.mark.parametrize("prediction", ["v", "eps", "x0"])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_conversions_invert_the_target(prediction, as_tensor):
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 4, generator=g, dtype=torch.float64)
    alpha, sigma = 0.6, 0.8  # alpha^2 + sigma^2 = 1
    if as_tensor:
        alpha, sigma = torch.tensor([alpha, sigma], dtype=torch.float64).split(1)
    x_t = alpha * x0 + sigma * eps
    out = target(prediction, x0, eps, alpha, sigma)
    torch.testing.assert_close(to_x0(prediction, out, x_t, alpha, sigma), x0)
    torch.testing.assert_close(to_eps(prediction, out, x_t, alpha, sigma), eps)
    v = velocity(x0, eps, alpha, sigma)
    torch.testing.assert_close(to_v(prediction, out, x_t, alpha, sigma), v)
    both = to_x0_eps(prediction, out, x_t, alpha, sigma)
    torch.testing.assert_close(both, (x0, eps))


@pytest.mark.parametrize("name", ["ddim", "ddpm", "dpmpp_2m"])
@pytest.mark.parametrize("prediction", ["v", "x0"])
def test_samplers_read_outputs_like_the_objective(name, prediction):
    diffusion = GaussianDiffusion(prediction=prediction)
    sampler = make_sampler(name, diffusion, num_inference_steps=4)
    timestep = int(sampler.timesteps[1])  # not the terminal step, where the DPM floor applies
    x_t, out = torch.randn(2, 1, 2, 3, generator=torch.Generator().manual_seed(1))  # (B=1, ...)
    x0, eps = sampler.to_x0_eps(out, timestep, x_t)
    timesteps = torch.tensor([timestep])
    torch.testing.assert_close(x0, diffusion.pred_to_x0(out, x_t, timesteps))
    torch.testing.assert_close(eps, diffusion.pred_to_eps(out, x_t, timesteps))
