"""Noise schedules: zero terminal SNR, agreement with diffusers, SNR helpers."""

from __future__ import annotations

import pytest
import torch

from walt.diffusion import (
    alpha_sigma,
    alphas_cumprod,
    log_snr,
    make_betas,
    rescale_zero_terminal_snr,
    snr,
)

diffusers_ddpm = pytest.importorskip("diffusers.schedulers.scheduling_ddpm")


@pytest.mark.parametrize("kind", ["linear", "scaled_linear", "cosine"])
def test_rescaled_schedule_has_zero_terminal_snr(kind):
    abar = alphas_cumprod(make_betas(kind, 1000, 1e-4, 0.02, True))
    assert abar.dtype == torch.float64
    assert abar[-1] == 0.0
    assert snr(abar)[-1] == 0.0
    assert torch.isneginf(log_snr(abar)[-1])
    # Lin et al. Algorithm 1 keeps the first step's abar.
    original = alphas_cumprod(make_betas(kind, 1000, 1e-4, 0.02, False))
    torch.testing.assert_close(abar[0], original[0], rtol=1e-12, atol=0)
    assert bool((snr(abar)[1:] < snr(abar)[:-1]).all()), "SNR must decrease strictly"


@pytest.mark.parametrize("kind", ["linear", "scaled_linear"])
def test_unrescaled_schedule_has_positive_terminal_snr(kind):
    abar = alphas_cumprod(make_betas(kind, 1000, 1e-4, 0.02, False))
    assert snr(abar)[-1] > 0


def test_rescale_matches_diffusers():
    betas32 = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float32)
    theirs = diffusers_ddpm.rescale_zero_terminal_snr(betas32.double())
    ours = rescale_zero_terminal_snr(betas32)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("kind", "diffusers_kind"),
    [("linear", "linear"), ("scaled_linear", "scaled_linear"), ("cosine", "squaredcos_cap_v2")],
)
@pytest.mark.parametrize("rescale", [True, False])
def test_betas_match_diffusers(kind, diffusers_kind, rescale):
    scheduler = diffusers_ddpm.DDPMScheduler(
        num_train_timesteps=1000,
        beta_start=1e-4,
        beta_end=0.02,
        beta_schedule=diffusers_kind,
        rescale_betas_zero_snr=rescale,
    )
    ours = make_betas(kind, 1000, 1e-4, 0.02, rescale)
    # diffusers builds the schedule in float32.
    torch.testing.assert_close(ours, scheduler.betas.double(), rtol=2e-5, atol=1e-6)
    abar = alphas_cumprod(ours)
    torch.testing.assert_close(abar, scheduler.alphas_cumprod.double(), rtol=5e-6, atol=1e-7)


def test_alpha_sigma_is_unit_norm():
    abar = alphas_cumprod(make_betas())
    alpha, sigma = alpha_sigma(abar)
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(abar))
    assert alpha[-1] == 0 and sigma[-1] == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(kind="quadratic"), "unknown schedule kind"),
        (dict(num_train_timesteps=1), "num_train_timesteps"),
        (dict(beta_start=0.0), "betas must lie"),
        (dict(beta_end=1.5), "betas must lie"),
    ],
)
def test_make_betas_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_betas(**kwargs)


def test_rescale_rejects_constant_abar():
    with pytest.raises(ValueError, match="betas"):
        rescale_zero_terminal_snr(torch.zeros(10))
