"""The sampling loop: agreement with a diffusers DDIM loop, guidance calls, self-conditioning."""

from __future__ import annotations

import pytest
import torch

from walt.diffusion import GaussianDiffusion, frame_condition, make_frame_mask
from walt.samplers import (
    ClassifierFreeGuidance,
    DDIMSampler,
    DPMSolverSampler,
    make_sampler,
    sample,
)

SHAPE = (2, 4, 3, 4, 4)
ABAR = GaussianDiffusion().alphas_cumprod


def fake_v(x: torch.Tensor, t: torch.Tensor, shift: float = 0.0) -> torch.Tensor:
    """A deterministic v-output: exact v toward a fixed target, plus a nonlinear term."""
    abar = ABAR[t].to(x.dtype).reshape(-1, 1, 1, 1, 1)
    a, s = abar.sqrt(), (1 - abar).sqrt()
    target = torch.linspace(-0.5, 0.5, x[0].numel(), dtype=x.dtype).reshape(x.shape[1:]) + shift
    return a * (x - a * target) / s - s * target + 0.1 * torch.sin(3 * x)


class RecordingDenoiser:
    """Fake conditional denoiser: the unconditional branch aims at a shifted target."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, x_t, timesteps, *, self_cond, uncond):
        self.calls.append(dict(timesteps=timesteps.clone(), self_cond=self_cond, uncond=uncond))
        return fake_v(x_t, timesteps, shift=0.3 if uncond else 0.0)


def noise(dtype=torch.float64):
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(0), dtype=dtype)


def test_loop_matches_diffusers_ddim_loop():
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.DDIMScheduler(
        rescale_betas_zero_snr=True,
        prediction_type="v_prediction",
        timestep_spacing="trailing",
        clip_sample=False,
        set_alpha_to_one=True,
    )
    scheduler.set_timesteps(50)
    x = noise()
    expected = [x]
    for t in scheduler.timesteps:
        x = scheduler.step(fake_v(x, t.expand(SHAPE[0])), t, x).prev_sample
        expected.append(x)
    seen = []
    out = sample(
        RecordingDenoiser(),
        DDIMSampler.from_diffusion(GaussianDiffusion()),
        SHAPE,
        x_T=expected[0],
        dtype=torch.float64,
        progress=False,
        callback=lambda i, t, step: seen.append(step.prev_sample),
    )
    assert len(seen) == 50
    for i, (ours, theirs) in enumerate(zip(seen, expected[1:])):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5, msg=f"step {i}")
    torch.testing.assert_close(out, expected[-1], rtol=1e-5, atol=1e-5)


def test_scale_one_guidance_equals_no_guidance_and_skips_uncond():
    sampler = DDIMSampler.from_diffusion(GaussianDiffusion(), num_inference_steps=10)
    plain, guided = RecordingDenoiser(), RecordingDenoiser()
    a = sample(plain, sampler, SHAPE, x_T=noise(), progress=False, dtype=torch.float64)
    b = sample(
        guided,
        sampler,
        SHAPE,
        x_T=noise(),
        progress=False,
        dtype=torch.float64,
        guidance=ClassifierFreeGuidance(guidance_scale=1.0),
    )
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert len(guided.calls) == 10 and not any(c["uncond"] for c in guided.calls)


def test_guided_loop_combines_cond_and_uncond():
    w = 3.0
    denoiser = RecordingDenoiser()
    out = sample(
        denoiser,
        DDIMSampler.from_diffusion(GaussianDiffusion(), num_inference_steps=5),
        SHAPE,
        x_T=noise(),
        progress=False,
        dtype=torch.float64,
        guidance=ClassifierFreeGuidance(guidance_scale=w),
    )
    assert [c["uncond"] for c in denoiser.calls] == [False, True] * 5
    # Reference: a hand-written loop over the same sampler steps.
    ref_sampler = DDIMSampler.from_diffusion(GaussianDiffusion(), num_inference_steps=5)
    x = noise()
    for t in ref_sampler.timesteps:
        tb = t.expand(SHAPE[0])
        cond, uncond = fake_v(x, tb), fake_v(x, tb, shift=0.3)
        x = ref_sampler.step(uncond + w * (cond - uncond), t, x).prev_sample
    torch.testing.assert_close(out, x)


def test_self_conditioning_feeds_previous_x0():
    denoiser = RecordingDenoiser()
    pred_x0 = []
    sample(
        denoiser,
        make_sampler("dpmpp_2m", GaussianDiffusion(), num_inference_steps=6),
        SHAPE,
        x_T=noise(),
        dtype=torch.float64,
        progress=False,
        self_condition=True,
        guidance=ClassifierFreeGuidance(guidance_scale=2.0),
        callback=lambda i, t, step: pred_x0.append(step.pred_x0),
    )
    conds = denoiser.calls[0::2]
    unconds = denoiser.calls[1::2]
    assert torch.equal(conds[0]["self_cond"], torch.zeros(SHAPE, dtype=torch.float64))
    for i in range(1, 6):
        assert conds[i]["self_cond"] is pred_x0[i - 1]
        assert unconds[i]["self_cond"] is pred_x0[i - 1]


def test_self_conditioning_off_passes_none():
    denoiser = RecordingDenoiser()
    sample(
        denoiser,
        DDIMSampler.from_diffusion(GaussianDiffusion(), num_inference_steps=3),
        SHAPE,
        progress=False,
        generator=torch.Generator().manual_seed(0),
    )
    assert all(c["self_cond"] is None for c in denoiser.calls)
    assert [c["timesteps"].tolist() for c in denoiser.calls] == [[999, 999], [666, 666], [332, 332]]


def test_generator_makes_sampling_reproducible_and_x_T_shape_is_checked():
    sampler = make_sampler("ddpm", GaussianDiffusion(), num_inference_steps=4)
    runs = [
        sample(
            RecordingDenoiser(),
            sampler,
            SHAPE,
            progress=False,
            generator=torch.Generator().manual_seed(7),
        )
        for _ in range(2)
    ]
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)
    with pytest.raises(ValueError, match="x_T"):
        sample(RecordingDenoiser(), sampler, SHAPE, x_T=torch.zeros(1, 4, 3, 4, 4), progress=False)


def test_frame_conditioned_denoiser_drops_c_fp_when_uncond():
    """Autoregressive guidance: the denoiser builds c_fp and nulls its mask for uncond."""
    z_known = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
    mask = make_frame_mask(SHAPE, 1)
    seen = []

    def denoiser(x_t, t, *, self_cond, uncond):
        c_fp = frame_condition(z_known, mask * (0.0 if uncond else 1.0))
        seen.append(c_fp[:, -1].sum().item())
        return fake_v(x_t, t)

    sampler = DPMSolverSampler.from_diffusion(GaussianDiffusion(), num_inference_steps=3)
    sample(denoiser, sampler, SHAPE, progress=False, guidance=ClassifierFreeGuidance(guidance_scale=2.0))
    area = SHAPE[3] * SHAPE[4] * SHAPE[0]
    assert seen == [area, 0.0] * 3


def test_frame_guidance_is_a_separate_scale():
    from walt.samplers.loop import guided_output

    x, t = noise(), torch.full((SHAPE[0],), 500)
    calls = []

    def denoiser(x_t, timesteps, *, self_cond, uncond, drop_frames=False):
        calls.append((uncond, drop_frames))
        return fake_v(x_t, timesteps, shift=0.3 * uncond + 0.7 * drop_frames)

    w, s_fp = 2.0, 3.0
    guidance = ClassifierFreeGuidance(guidance_scale=w, frame_guidance_scale=s_fp)
    out = guided_output(denoiser, x, t, self_cond=None, guidance=guidance, progress=0.0)
    assert calls == [(False, False), (True, False), (True, True)]
    cond, uncond, null = fake_v(x, t), fake_v(x, t, shift=0.3), fake_v(x, t, shift=1.0)
    # e(0, 0) + s_fp (e(c_fp, 0) - e(0, 0)) + w (e(c_fp, y) - e(c_fp, 0))
    torch.testing.assert_close(out, null + s_fp * (uncond - null) + w * (cond - uncond))
    calls.clear()
    only_frames = ClassifierFreeGuidance(guidance_scale=1.0, frame_guidance_scale=s_fp)
    out = guided_output(denoiser, x, t, self_cond=None, guidance=only_frames, progress=0.0)
    torch.testing.assert_close(out, null + s_fp * (uncond - null) + (cond - uncond))
