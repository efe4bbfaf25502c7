"""SpaceTimeUnet and Unet3D: the DiT's interface, identity start in time, 2D mode, focus on
present, shapes and gradients in latent and pixel space, and size rules."""

from __future__ import annotations

import pytest
import torch

from models import SpaceTimeUnet, Unet3D
from tests.unet_fixtures import per_frame, perturb, tiny_unet

CLASSES = [SpaceTimeUnet, Unet3D]
STEPS = torch.tensor([10.0, 700.0])


def _video(c: int = 3, t: int = 5, size: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(2, c, t, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("cls", CLASSES)
def test_fresh_video_output_equals_per_frame_output(cls):
    model = tiny_unet(cls).eval()
    x, labels = _video(), torch.tensor([0, 2])
    torch.testing.assert_close(
        model(x, STEPS, class_labels=labels), per_frame(model, x, STEPS, class_labels=labels)
    )


@pytest.mark.parametrize("cls", CLASSES)
def test_2d_model_is_per_frame_and_trained_video_model_is_not(cls):
    image_model = perturb(tiny_unet(cls, enable_time=False)).eval()
    assert not [n for n, _ in image_model.named_parameters() if "temporal" in n]
    x = _video()
    torch.testing.assert_close(image_model(x, STEPS), per_frame(image_model, x, STEPS))
    video_model = perturb(tiny_unet(cls)).eval()
    assert not torch.allclose(video_model(x, STEPS), per_frame(video_model, x, STEPS), atol=1e-4)


def test_focus_present_one_makes_frames_independent():
    x = _video()
    changed = x.clone()
    changed[:, :, 2] += torch.randn(changed[:, :, 2].shape)
    keep = [0, 1, 3, 4]
    for p, independent in ((1.0, True), (0.0, False)):
        model = perturb(tiny_unet(Unet3D, prob_focus_present=p)).train()
        a, b = model(x, STEPS)[:, :, keep], model(changed, STEPS)[:, :, keep]
        assert torch.allclose(a, b, atol=1e-5) == independent
    # focus on present is a training-time mask only
    model.prob_focus_present = 1.0
    model.eval()
    assert not torch.allclose(model(x, STEPS)[:, :, keep], model(changed, STEPS)[:, :, keep])


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("space", ["latent", "pixel"])
@pytest.mark.parametrize("frames", [1, 5])
def test_shapes_and_a_gradient_for_every_parameter(cls, space, frames):
    c, size = (8, 4) if space == "latent" else (3, 8)
    model = perturb(tiny_unet(cls, in_channels=c, num_extra_cond=1, text_dim=6)).train()
    x = _video(c, frames, size)
    kw = dict(
        class_labels=torch.tensor([1, -1]),
        text_emb=torch.randn(2, 3, 6),
        text_mask=torch.tensor([[True, True, False], [True, False, False]]),
        self_cond=torch.randn_like(x),
        frame_cond=torch.randn(2, c + 1, frames, size, size),
        extra_cond=torch.tensor([[8.0], [0.0]]),
        drop_class=torch.tensor([True, False]),
        drop_text=torch.tensor([False, True]),
    )
    out = model(x, STEPS, **kw)
    assert out.shape == x.shape
    out.square().mean().backward()
    # Images (t = 1) skip every temporal layer, so only those may lack a gradient there.
    for name, p in model.named_parameters():
        skipped = frames == 1 and "temporal" in name
        assert (p.grad is None or not p.grad.any()) == skipped, name


@pytest.mark.parametrize("cls", CLASSES)
def test_guidance_nulls_match_the_dit_semantics(cls):
    model = perturb(tiny_unet(cls, text_dim=6)).eval()
    x, text = _video(), torch.randn(2, 3, 6)
    null = model(x, STEPS)
    dropped = model(x, STEPS, class_labels=torch.tensor([0, 1]), drop_class=torch.ones(2).bool(),
                    text_emb=text, drop_text=torch.ones(2).bool())
    torch.testing.assert_close(dropped, null)
    assert not torch.allclose(model(x, STEPS, class_labels=torch.tensor([0, 1])), null)


def test_packed_image_frames_equal_the_images_alone():
    model = perturb(tiny_unet(SpaceTimeUnet)).eval()
    x = _video()
    mask = torch.tensor([[False, False, False, True, True]] * 2)
    packed = model(x, STEPS, image_frames=mask)
    torch.testing.assert_close(packed[:, :, 3:], per_frame(model, x[:, :, 3:], STEPS))
    with pytest.raises(ValueError, match="image_frames"):
        tiny_unet(SpaceTimeUnet, temporal_compression=(True, False))(x, STEPS, image_frames=mask)


def test_temporal_compression_and_size_rules():
    model = tiny_unet(SpaceTimeUnet, temporal_compression=(True, False))
    assert model(_video(t=5), STEPS).shape == (2, 3, 5, 4, 4)  # 5 -> 3 -> 5 frames
    with pytest.raises(ValueError, match="frame count t=4"):
        model(_video(t=4), STEPS)
    with pytest.raises(ValueError, match="height and width"):
        model(_video(size=3), STEPS)
    with pytest.raises(ValueError, match="last level"):
        tiny_unet(SpaceTimeUnet, temporal_compression=(False, True))
    with pytest.raises(ValueError, match="temporal_compression"):
        tiny_unet(Unet3D, temporal_compression=(True, False))
    with pytest.raises(ValueError, match="attn_levels"):
        tiny_unet(SpaceTimeUnet, attn_levels=(True,))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"self_cond": torch.zeros(2, 3, 5, 4, 2)}, "self_cond must have shape"),
        ({"frame_cond": torch.zeros(2, 3, 5, 4, 4)}, "frame_cond must have shape"),
        ({"extra_cond": torch.zeros(2, 1)}, "num_extra_cond=0"),
        ({"text_emb": torch.zeros(2, 3, 6)}, "text_dim=0"),
        ({"class_labels": torch.tensor([0, 3])}, "class_labels outside"),
    ],
)
def test_bad_conditioning_names_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny_unet(SpaceTimeUnet)(_video(), STEPS, **kwargs)


def test_grad_checkpointing_gives_the_same_gradients():
    x = _video()
    grads = []
    for checkpointing in (False, True):
        model = perturb(tiny_unet(SpaceTimeUnet, grad_checkpointing=checkpointing)).train()
        model(x, STEPS).square().mean().backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, msg=name)
