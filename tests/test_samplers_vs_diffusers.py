"""Full sampling loops of our samplers against diffusers' schedulers with the same schedule.

Both sides use linear betas 1e-4..0.02 over 1000 steps rescaled to zero terminal SNR,
v-prediction and trailing spacing, the same deterministic fake model and the same noise; every
intermediate sample is compared. diffusers is a test-only dependency.
"""

from __future__ import annotations

import pytest
import torch

from walt.diffusion import GaussianDiffusion
from walt.samplers import DDIMSampler, DDPMSampler, DPMSolverSampler

diffusers = pytest.importorskip("diffusers")

SHAPE = (2, 3, 2, 4, 4)
ABAR = GaussianDiffusion().alphas_cumprod
COMMON = dict(
    num_train_timesteps=1000,
    beta_start=1e-4,
    beta_end=0.02,
    beta_schedule="linear",
    rescale_betas_zero_snr=True,
    prediction_type="v_prediction",
    timestep_spacing="trailing",
)


def fake_model(x: torch.Tensor, t: int) -> torch.Tensor:
    """Deterministic v-output: the exact v of a fixed target plus a nonlinear perturbation."""
    abar = ABAR[t].item()
    a, s = abar**0.5, (1.0 - abar) ** 0.5
    target = torch.linspace(-0.8, 0.8, x[0].numel(), dtype=x.dtype).reshape(x.shape[1:])
    eps = (x - a * target) / s
    return a * eps - s * target + 0.3 * torch.tanh(2 * x) * (t / 1000.0) + 0.1 * torch.sin(3 * x)


def fake_output(prediction: str, abar: torch.Tensor):
    """``fake_model``'s x0 estimate expressed as a ``prediction`` output on schedule ``abar``."""

    def model(x: torch.Tensor, t: int) -> torch.Tensor:
        v = fake_model(x, t)
        x0 = ABAR[t].item() ** 0.5 * x - (1.0 - ABAR[t].item()) ** 0.5 * v
        a, s = abar[t].item() ** 0.5, (1.0 - abar[t].item()) ** 0.5
        return x0 if prediction == "x0" else (x - a * x0) / s

    return model


def run_ours(sampler, x, generator=None, model=fake_model):
    trajectory = []
    for t in sampler.timesteps:
        out = sampler.step(model(x, int(t)), t, x, generator=generator)
        x = out.prev_sample
        trajectory.append((x, out.pred_x0))
    return trajectory


def run_diffusers(scheduler, x, generator=None, model=fake_model, **step_kwargs):
    trajectory = []
    for t in scheduler.timesteps:
        out = scheduler.step(model(x, int(t)), t, x, generator=generator, **step_kwargs)
        x = out.prev_sample
        trajectory.append((x, getattr(out, "pred_original_sample", None)))
    return trajectory


def assert_trajectories_close(ours, theirs, rtol, atol, x0_tol=None):
    assert len(ours) == len(theirs)
    x0_tol = atol if x0_tol is None else x0_tol
    for i, ((x, x0), (y, y0)) in enumerate(zip(ours, theirs)):
        err = (x - y).abs().max().item()
        torch.testing.assert_close(x, y, rtol=rtol, atol=atol, msg=f"step {i}: max err {err:.2e}")
        if y0 is not None:
            err = (x0 - y0).abs().max().item()
            torch.testing.assert_close(
                x0, y0, rtol=rtol, atol=x0_tol, msg=f"x0 at step {i}: max err {err:.2e}"
            )


def initial_noise(dtype: torch.dtype) -> torch.Tensor:
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(0), dtype=dtype)


@pytest.mark.parametrize("steps", [50, 10])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ddim_matches_diffusers(steps, dtype):
    theirs = diffusers.DDIMScheduler(**COMMON, clip_sample=False, set_alpha_to_one=True)
    theirs.set_timesteps(steps)
    ours = DDIMSampler.from_diffusion(GaussianDiffusion(), num_inference_steps=steps)
    assert ours.timesteps.tolist() == theirs.timesteps.tolist()
    x = initial_noise(dtype)
    assert_trajectories_close(run_ours(ours, x), run_diffusers(theirs, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("eta", [0.5, 1.0])
def test_ddim_eta_matches_diffusers(eta):
    theirs = diffusers.DDIMScheduler(**COMMON, clip_sample=False, set_alpha_to_one=True)
    theirs.set_timesteps(20)
    ours = DDIMSampler.from_diffusion(GaussianDiffusion(), num_inference_steps=20, eta=eta)
    x = initial_noise(torch.float64)
    a = run_ours(ours, x, torch.Generator().manual_seed(1))
    b = run_diffusers(theirs, x, torch.Generator().manual_seed(1), eta=eta)
    assert_trajectories_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("steps", [50, 20])
def test_ddpm_matches_diffusers(steps):
    theirs = diffusers.DDPMScheduler(**COMMON, clip_sample=False, variance_type="fixed_small")
    theirs.set_timesteps(steps)
    ours = DDPMSampler.from_diffusion(GaussianDiffusion(), num_inference_steps=steps)
    assert ours.timesteps.tolist() == theirs.timesteps.tolist()
    x = initial_noise(torch.float64)
    a = run_ours(ours, x, torch.Generator().manual_seed(2))
    b = run_diffusers(theirs, x, torch.Generator().manual_seed(2))
    assert_trajectories_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("steps", [20, 8])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dpm_solver_matches_diffusers(steps, dtype):
    theirs = diffusers.DPMSolverMultistepScheduler(
        **COMMON, algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero"
    )
    theirs.set_timesteps(steps)
    ours = DPMSolverSampler.from_diffusion(GaussianDiffusion(), num_inference_steps=steps)
    assert ours.timesteps.tolist() == theirs.timesteps.tolist()
    x = initial_noise(dtype)
    a = [(x_, None) for x_, _ in run_ours(ours, x)]
    b = run_diffusers(theirs, x)
    assert_trajectories_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("spacing", ["leading", "linspace", "trailing"])
@pytest.mark.parametrize("steps", [50, 7])
def test_spacings_match_diffusers(spacing, steps):
    config = {**COMMON, "timestep_spacing": spacing}
    theirs = diffusers.DDPMScheduler(**config)
    theirs.set_timesteps(steps)
    ours = DDPMSampler.from_diffusion(
        GaussianDiffusion(), num_inference_steps=steps, timestep_spacing=spacing
    )
    assert ours.timesteps.tolist() == theirs.timesteps.tolist()


@pytest.mark.parametrize("cls_name", ["ddim", "ddpm", "dpm"])
@pytest.mark.parametrize(
    ("prediction", "theirs_prediction", "rescale"),
    [("eps", "epsilon", False), ("x0", "sample", True)],
)
def test_other_prediction_types_match_diffusers(cls_name, prediction, theirs_prediction, rescale):
    config = {**COMMON, "prediction_type": theirs_prediction, "rescale_betas_zero_snr": rescale}
    diffusion = GaussianDiffusion(prediction=prediction, rescale_zero_snr=rescale)
    if cls_name == "ddim":
        theirs = diffusers.DDIMScheduler(**config, clip_sample=False, set_alpha_to_one=True)
        ours = DDIMSampler.from_diffusion(diffusion, num_inference_steps=10)
    elif cls_name == "ddpm":
        theirs = diffusers.DDPMScheduler(**config, clip_sample=False)
        ours = DDPMSampler.from_diffusion(diffusion, num_inference_steps=10)
    else:
        theirs = diffusers.DPMSolverMultistepScheduler(
            **config, algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero"
        )
        ours = DPMSolverSampler.from_diffusion(diffusion, num_inference_steps=10)
    theirs.set_timesteps(10)
    x = initial_noise(torch.float64)
    model = fake_output(prediction, diffusion.alphas_cumprod)
    a = run_ours(ours, x, torch.Generator().manual_seed(3), model=model)
    b = run_diffusers(theirs, x, torch.Generator().manual_seed(3), model=model)
    if cls_name == "dpm":
        a = [(x_, None) for x_, _ in a]
    # eps -> x0 divides by alpha_T ~ 6e-3 at the first step, which magnifies the float32
    # rounding of diffusers' schedule to ~2e-5 in that x0 estimate; the samples stay at 1e-6.
    x0_tol = 1e-4 if prediction == "eps" else 1e-5
    assert_trajectories_close(a, b, rtol=1e-5, atol=1e-5, x0_tol=x0_tol)


def test_ddpm_large_variance_matches_diffusers():
    theirs = diffusers.DDPMScheduler(**COMMON, clip_sample=False, variance_type="fixed_large")
    theirs.set_timesteps(20)
    ours = DDPMSampler.from_diffusion(GaussianDiffusion(), num_inference_steps=20, variance="large")
    x = initial_noise(torch.float64)
    a = run_ours(ours, x, torch.Generator().manual_seed(4))
    b = run_diffusers(theirs, x, torch.Generator().manual_seed(4))
    # diffusers adds beta_t-variance noise even after the last step; Ho et al. (Alg. 2) and we
    # return the noise-free mean there, which is the x0 estimate.
    assert_trajectories_close(a[:-1], b[:-1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a[-1][0], a[-1][1])
    torch.testing.assert_close(a[-1][1], b[-1][1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["ddim", "ddpm"])
def test_clipped_x0_matches_diffusers(name):
    """Our clip re-derives eps from the clipped x0 (diffusers' use_clipped_model_output)."""
    x = initial_noise(torch.float64) * 3.0  # large enough that x0 estimates get clipped
    if name == "ddim":
        theirs = diffusers.DDIMScheduler(**COMMON, clip_sample=True, clip_sample_range=0.5)
        ours = DDIMSampler.from_diffusion(GaussianDiffusion(), num_inference_steps=10, clip_x0=0.5)
        kwargs = dict(use_clipped_model_output=True)
    else:
        theirs = diffusers.DDPMScheduler(**COMMON, clip_sample=True, clip_sample_range=0.5)
        ours = DDPMSampler.from_diffusion(GaussianDiffusion(), num_inference_steps=10, clip_x0=0.5)
        kwargs = {}
    theirs.set_timesteps(10)
    a = run_ours(ours, x, torch.Generator().manual_seed(5))
    b = run_diffusers(theirs, x, torch.Generator().manual_seed(5), **kwargs)
    assert max(x0.abs().max().item() for _, x0 in a) == pytest.approx(0.5)
    assert_trajectories_close(a, b, rtol=1e-5, atol=1e-5)
