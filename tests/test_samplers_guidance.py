"""Classifier-free guidance: combination, schedules, rescale."""

from __future__ import annotations

import math

import pytest
import torch

from walt.samplers import ClassifierFreeGuidance, progress_of


def outputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 4, 3, 5, 5, generator=g), torch.randn(2, 4, 3, 5, 5, generator=g)


@pytest.mark.parametrize("w", [0.0, 1.0, 2.5, 7.5])
def test_constant_guidance_combines(w):
    cond, uncond = outputs()
    guidance = ClassifierFreeGuidance(guidance_scale=w)
    torch.testing.assert_close(guidance.combine(cond, uncond, 0.3), uncond + w * (cond - uncond))


def test_scale_one_is_conditional_only():
    cond, uncond = outputs()
    guidance = ClassifierFreeGuidance(guidance_scale=1.0)
    assert not guidance.needs_uncond(0.0)
    torch.testing.assert_close(guidance.combine(cond, uncond, 0.5), cond)


@pytest.mark.parametrize(
    ("schedule", "reverse", "expected"),
    [
        ("constant", False, [5.0, 5.0, 5.0]),
        ("linear", False, [1.0, 3.0, 5.0]),
        ("linear", True, [5.0, 3.0, 1.0]),
        ("cosine", False, [1.0, 3.0, 5.0]),
        ("cosine", True, [5.0, 3.0, 1.0]),
    ],
)
def test_schedule_values(schedule, reverse, expected):
    guidance = ClassifierFreeGuidance(guidance_scale=5.0, guidance_schedule=schedule,
                                      guidance_min_scale=1.0, guidance_reverse=reverse)
    values = [guidance.scale_at(p) for p in (0.0, 0.5, 1.0)]
    assert values == pytest.approx(expected)


def test_cosine_schedule_shape():
    guidance = ClassifierFreeGuidance(guidance_scale=3.0, guidance_schedule="cosine", guidance_min_scale=0.0)
    assert guidance.scale_at(0.25) == pytest.approx(3.0 * (1 - math.cos(math.pi / 4)) / 2)
    assert guidance.needs_uncond(0.25) and guidance.needs_uncond(1.0)


def test_rescale_restores_conditional_std():
    cond, uncond = outputs(1)
    full = ClassifierFreeGuidance(guidance_scale=7.0, guidance_rescale=1.0).combine(cond, uncond, 0.0)
    torch.testing.assert_close(full.std(dim=(1, 2, 3, 4)), cond.std(dim=(1, 2, 3, 4)))
    plain = ClassifierFreeGuidance(guidance_scale=7.0).combine(cond, uncond, 0.0)
    half = ClassifierFreeGuidance(guidance_scale=7.0, guidance_rescale=0.5).combine(cond, uncond, 0.0)
    torch.testing.assert_close(half, 0.5 * full + 0.5 * plain)


def test_progress_of():
    assert [progress_of(i, 5) for i in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert progress_of(0, 1) == 1.0
    with pytest.raises(ValueError, match="out of range"):
        progress_of(5, 5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [(dict(guidance_schedule="step"), "guidance_schedule"),
     (dict(guidance_rescale=1.5), "guidance_rescale")],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ClassifierFreeGuidance(guidance_scale=2.0, **kwargs)


def test_shape_mismatch_and_bad_progress_raise():
    cond, uncond = outputs()
    guidance = ClassifierFreeGuidance(guidance_scale=2.0)
    with pytest.raises(ValueError, match="shape"):
        guidance.combine(cond, uncond[:1], 0.0)
    with pytest.raises(ValueError, match="progress"):
        guidance.scale_at(1.5)
