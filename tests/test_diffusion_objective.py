"""GaussianDiffusion: forward process, targets, conversions, min-SNR weights, masked loss."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

from walt.diffusion import GaussianDiffusion

SHAPE = (4, 3, 5, 2, 2)


def batch(seed: int = 0, dtype: torch.dtype = torch.float64):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(SHAPE, generator=g, dtype=dtype)
    noise = torch.randn(SHAPE, generator=g, dtype=dtype)
    t = torch.tensor([0, 250, 998, 999])
    return x0, noise, t


def test_q_sample_and_velocity_match_diffusers():
    diffusers = pytest.importorskip("diffusers")
    theirs = diffusers.DDPMScheduler(rescale_betas_zero_snr=True, prediction_type="v_prediction")
    diffusion = GaussianDiffusion()
    x0, noise, t = batch(dtype=torch.float32)
    torch.testing.assert_close(
        diffusion.q_sample(x0, t, noise), theirs.add_noise(x0, noise, t), rtol=1e-5, atol=1e-5
    )
    torch.testing.assert_close(
        diffusion.target(x0, noise, t), theirs.get_velocity(x0, noise, t), rtol=1e-5, atol=1e-5
    )


def test_terminal_step_is_pure_noise():
    diffusion = GaussianDiffusion()
    x0, noise, _ = batch()
    t = torch.full((SHAPE[0],), 999)
    torch.testing.assert_close(diffusion.q_sample(x0, t, noise), noise, rtol=0, atol=0)
    torch.testing.assert_close(diffusion.target(x0, noise, t), -x0, rtol=0, atol=0)


@pytest.mark.parametrize("prediction", ["v", "eps", "x0"])
def test_conversions_round_trip(prediction):
    rescale = prediction != "eps"  # eps cannot be used at zero terminal SNR
    diffusion = GaussianDiffusion(prediction=prediction, rescale_zero_snr=rescale)
    x0, noise, t = batch()
    x_t = diffusion.q_sample(x0, t, noise)
    pred = diffusion.target(x0, noise, t)
    torch.testing.assert_close(diffusion.pred_to_x0(pred, x_t, t), x0)
    torch.testing.assert_close(diffusion.pred_to_eps(pred, x_t, t), noise)
    v = diffusion.coefficients(t, x0)[0] * noise - diffusion.coefficients(t, x0)[1] * x0
    torch.testing.assert_close(diffusion.pred_to_v(pred, x_t, t), v)


def test_eps_prediction_rejected_at_zero_terminal_snr():
    with pytest.raises(ValueError, match="zero terminal SNR"):
        GaussianDiffusion(prediction="eps")


@pytest.mark.parametrize(
    "kwargs",
    [dict(prediction="score"), dict(loss_weighting="p2"), dict(min_snr_gamma=0.0)],
)
def test_bad_constructor_arguments(kwargs):
    with pytest.raises(ValueError):
        GaussianDiffusion(**kwargs)


@pytest.mark.parametrize(
    ("prediction", "formula"),
    [
        ("v", lambda r, g: torch.clamp(r, max=g) / (r + 1)),
        ("x0", lambda r, g: torch.clamp(r, max=g)),
        ("eps", lambda r, g: torch.clamp(r, max=g) / r),
    ],
)
def test_min_snr_weights(prediction, formula):
    rescale = prediction != "eps"
    diffusion = GaussianDiffusion(
        prediction=prediction, rescale_zero_snr=rescale, loss_weighting="min_snr", min_snr_gamma=5.0
    )
    t = torch.tensor([0, 100, 500, 998])
    abar = diffusion.alphas_cumprod[t]
    ratio = abar / (1 - abar)
    torch.testing.assert_close(diffusion.loss_weights(t), formula(ratio, 5.0))
    # High-SNR steps are clamped: at t=0 SNR ~ 1e4 >> gamma.
    first = diffusion.loss_weights(t)[0].item()
    assert first == 5.0 if prediction == "x0" else first < 1e-2


def test_min_snr_v_weight_is_zero_at_terminal_step():
    diffusion = GaussianDiffusion(loss_weighting="min_snr")
    assert diffusion.loss_weights(torch.tensor([999])).item() == 0.0


def test_loss_is_mse_on_target_without_mask():
    diffusion = GaussianDiffusion()
    x0, noise, t = batch()
    pred = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    expected = ((pred - diffusion.target(x0, noise, t)) ** 2).mean()
    torch.testing.assert_close(diffusion.loss(pred, x0, noise, t).double(), expected)
    assert diffusion.loss(diffusion.target(x0, noise, t), x0, noise, t) == 0


def test_per_frame_mask_averages_masked_frames_per_sample():
    diffusion = GaussianDiffusion()
    x0, noise, t = batch()
    pred = torch.randn(SHAPE, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    mask = torch.zeros(SHAPE[0], SHAPE[2])
    mask[0, 2:] = 1  # sample 0 generates frames 2..4
    mask[1, 1:] = 1
    mask[2, 4] = 1
    mask[3, :] = 1
    err = (pred - diffusion.target(x0, noise, t)) ** 2
    per_sample = torch.stack(
        [err[b][:, mask[b].bool()].mean() for b in range(SHAPE[0])]
    )  # mean over each sample's masked elements
    torch.testing.assert_close(diffusion.loss(pred, x0, noise, t, mask).double(), per_sample.mean())
    # The broadcastable (B, 1, t, 1, 1) form gives the same value.
    torch.testing.assert_close(
        diffusion.loss(pred, x0, noise, t, mask[:, None, :, None, None]),
        diffusion.loss(pred, x0, noise, t, mask),
    )


def test_samples_without_mask_weight_are_left_out():
    diffusion = GaussianDiffusion()
    x0, noise, t = batch()
    pred = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    mask = torch.ones(SHAPE[0], SHAPE[2])
    mask[1] = 0
    per_sample, valid = diffusion.loss_per_sample(pred, x0, noise, t, mask)
    assert valid.tolist() == [True, False, True, True]
    assert per_sample[1] == 0
    torch.testing.assert_close(
        diffusion.loss(pred, x0, noise, t, mask), per_sample[[0, 2, 3]].mean()
    )
    pred.requires_grad_(True)
    zero = diffusion.loss(pred, x0, noise, t, torch.zeros(SHAPE[0], SHAPE[2]))
    zero.backward()
    assert zero.item() == 0 and pred.grad is not None


def test_min_snr_loss_scales_per_sample():
    plain = GaussianDiffusion()
    weighted = GaussianDiffusion(loss_weighting="min_snr")
    x0, noise, t = batch()
    pred = torch.randn(SHAPE, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    a, _ = plain.loss_per_sample(pred, x0, noise, t)
    b, _ = weighted.loss_per_sample(pred, x0, noise, t)
    torch.testing.assert_close(b.double(), a.double() * weighted.loss_weights(t))


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (torch.ones(4, 3), "per-frame"),
        (torch.ones(2, 1, 5, 1, 1), "does not broadcast"),
        (-torch.ones(4, 5), "non-negative"),
    ],
)
def test_bad_masks_raise(mask, message):
    diffusion = GaussianDiffusion()
    x0, noise, t = batch()
    with pytest.raises(ValueError, match=message):
        diffusion.loss(x0, x0, noise, t, mask)


def test_loss_gradient_flows_to_prediction():
    diffusion = GaussianDiffusion(loss_weighting="min_snr")
    x0, noise, t = batch(dtype=torch.float32)
    pred = torch.zeros(SHAPE, requires_grad=True)
    diffusion.loss(pred, x0, noise, torch.tensor([1, 2, 3, 4])).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0


def test_sample_timesteps_range_and_reproducibility():
    diffusion = GaussianDiffusion(num_train_timesteps=10)
    a = diffusion.sample_timesteps(2000, torch.Generator().manual_seed(0))
    b = diffusion.sample_timesteps(2000, torch.Generator().manual_seed(0))
    assert a.dtype == torch.long and torch.equal(a, b)
    assert a.min() == 0 and a.max() == 9


def test_bad_timesteps_raise():
    diffusion = GaussianDiffusion()
    x0, noise, _ = batch()
    with pytest.raises(ValueError, match="integer"):
        diffusion.q_sample(x0, torch.zeros(SHAPE[0]), noise)
    with pytest.raises(ValueError, match="B=4"):
        diffusion.q_sample(x0, torch.zeros(2, dtype=torch.long), noise)


def test_pickle_and_deepcopy_drop_device_tables():
    diffusion = GaussianDiffusion(loss_weighting="min_snr")
    x0, noise, t = batch()
    expected = diffusion.q_sample(x0, t, noise)
    assert diffusion._tables, "q_sample builds the coefficient table"
    for clone in (pickle.loads(pickle.dumps(diffusion)), copy.deepcopy(diffusion)):
        assert clone._tables == {}
        torch.testing.assert_close(clone.q_sample(x0, t, noise), expected)
        assert clone.loss_weighting == "min_snr"
    assert diffusion._tables, "the original keeps its tables"


def test_buildable_from_cli_yaml():
    """LightningCLI builds the diffusion from a class_path/init_args YAML block."""
    jsonargparse = pytest.importorskip("jsonargparse")
    parser = jsonargparse.ArgumentParser(exit_on_error=False)
    parser.add_argument("--diffusion", type=GaussianDiffusion)
    yaml = (
        "diffusion:\n"
        "  class_path: walt.diffusion.GaussianDiffusion\n"
        "  init_args: {prediction: x0, loss_weighting: min_snr, min_snr_gamma: 3.0}\n"
    )
    diffusion = parser.instantiate_classes(parser.parse_string(yaml)).diffusion
    assert isinstance(diffusion, GaussianDiffusion)
    assert (diffusion.prediction, diffusion.loss_weighting, diffusion.min_snr_gamma) == (
        "x0",
        "min_snr",
        3.0,
    )
    with pytest.raises(jsonargparse.ArgumentError):
        parser.parse_string(yaml.replace("x0", "score"))


def test_half_precision_inputs_give_a_float32_loss():
    diffusion = GaussianDiffusion()
    x0, noise, t = batch(dtype=torch.float32)
    pred = torch.randn(SHAPE, generator=torch.Generator().manual_seed(8))
    full = diffusion.loss(pred, x0, noise, t)
    half = diffusion.loss(pred.bfloat16(), x0.bfloat16(), noise.bfloat16(), t)
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, full, rtol=2e-2, atol=0)
