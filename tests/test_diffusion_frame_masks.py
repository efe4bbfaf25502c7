"""Frame-prediction masks and c_fp = concat(m * z, m)."""

from __future__ import annotations

import pytest
import torch

from walt.diffusion import (
    frame_condition,
    frame_mask_from_indices,
    generation_mask,
    make_frame_mask,
    null_frame_condition,
    sample_frame_mask,
)

SHAPE = (3, 8, 5, 4, 6)


@pytest.mark.parametrize("k", [0, 1, 2, 5])
def test_prefix_mask(k):
    mask = make_frame_mask(SHAPE, k)
    assert mask.shape == (3, 1, 5, 1, 1)
    expected = torch.tensor([1.0] * k + [0.0] * (5 - k))
    for b in range(SHAPE[0]):
        assert torch.equal(mask[b, 0, :, 0, 0], expected)


def test_per_sample_counts():
    mask = make_frame_mask(SHAPE, torch.tensor([0, 1, 2]))
    assert mask[:, 0, :, 0, 0].sum(dim=1).tolist() == [0, 1, 2]
    assert torch.equal(generation_mask(mask), 1 - mask)


@pytest.mark.parametrize("bad", [-1, 6, torch.tensor([1, 2])])
def test_prefix_mask_rejects_bad_counts(bad):
    with pytest.raises(ValueError, match="num_cond_frames"):
        make_frame_mask(SHAPE, bad)


def test_interpolation_mask_first_and_last():
    mask = frame_mask_from_indices(SHAPE, (0, -1))
    assert mask[0, 0, :, 0, 0].tolist() == [1.0, 0.0, 0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="out of range"):
        frame_mask_from_indices(SHAPE, (5,))


def test_frame_condition_concatenates_masked_latent_and_mask():
    z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    mask = frame_mask_from_indices(SHAPE, (0, -1))
    cond = frame_condition(z, mask)
    assert cond.shape == (3, 9, 5, 4, 6)
    torch.testing.assert_close(cond[:, :8, 0], z[:, :, 0])
    torch.testing.assert_close(cond[:, :8, 4], z[:, :, 4])
    assert cond[:, :8, 1:4].abs().sum() == 0
    assert torch.equal(cond[:, 8, :, 0, 0], mask[:, 0, :, 0, 0])
    # A (B, t) per-frame mask gives the same result.
    torch.testing.assert_close(frame_condition(z, mask[:, 0, :, 0, 0]), cond)


def test_null_frame_condition_drops_everything():
    z = torch.randn(SHAPE)
    cond = null_frame_condition(z)
    assert cond.shape == (3, 9, 5, 4, 6) and cond.abs().sum() == 0


def test_frame_condition_rejects_bad_shapes():
    with pytest.raises(ValueError, match="does not broadcast"):
        frame_condition(torch.randn(SHAPE), torch.ones(3, 4))
    with pytest.raises(ValueError, match=r"\(B, c, t, h, w\)"):
        frame_condition(torch.randn(3, 8, 5, 4), torch.ones(3, 5))


@pytest.mark.parametrize("p_frame_cond", [0.0, 1.0])
def test_sample_frame_mask_extremes(p_frame_cond):
    mask = sample_frame_mask(
        (64, 8, 5, 2, 2), p_frame_cond=p_frame_cond, generator=torch.Generator().manual_seed(0)
    )
    counts = mask[:, 0, :, 0, 0].sum(dim=1)
    if p_frame_cond == 0.0:
        assert counts.sum() == 0
    else:
        assert set(counts.tolist()) == {1.0, 2.0}
        # Masks are always a prefix of the clip.
        assert torch.equal(mask, make_frame_mask((64, 8, 5, 2, 2), counts.long()))


def test_sample_frame_mask_rate_and_images():
    mask = sample_frame_mask(
        (2000, 1, 5, 1, 1), p_frame_cond=0.3, generator=torch.Generator().manual_seed(1)
    )
    rate = (mask[:, 0, :, 0, 0].sum(dim=1) > 0).float().mean().item()
    assert 0.25 < rate < 0.35
    image = sample_frame_mask((8, 1, 1, 1, 1), p_frame_cond=1.0)
    assert image.sum() == 0, "a 1-frame latent must never be fully conditioned"
    with pytest.raises(ValueError, match="p_frame_cond"):
        sample_frame_mask(SHAPE, p_frame_cond=1.5)


def test_interpolation_masks_keep_keyframes_only():
    from walt.diffusion.frame_masks import keyframe_indices, sample_interpolation_mask

    assert keyframe_indices(5, 2) == [0, 2, 4] and keyframe_indices(5, 3) == [0, 3, 4]
    g = torch.Generator().manual_seed(0)
    mask = sample_interpolation_mask((64, 8, 5, 2, 2), p_interpolate=0.5, interpolate_every=[2, 3],
                                     generator=g)[:, 0, :, 0, 0]  # (B, t)
    rows = {tuple(r) for r in mask.tolist()}
    assert rows == {(0.0,) * 5, (1.0, 0.0, 1.0, 0.0, 1.0), (1.0, 0.0, 0.0, 1.0, 1.0)}
    # Too short a clip has nothing between keyframes: no condition.
    short = sample_interpolation_mask((4, 8, 2, 2, 2), p_interpolate=1.0, generator=g)
    assert short.sum() == 0
    with pytest.raises(ValueError, match="p_interpolate"):
        sample_interpolation_mask((1, 8, 5, 2, 2), p_interpolate=2.0)
