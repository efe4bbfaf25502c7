"""PseudoConv3d and SpatioTemporalAttention: identity start in time, image / video / enable_time
behaviour, masks and errors."""

from __future__ import annotations

import pytest
import torch

from models.unet import PseudoConv3d, SpatioTemporalAttention
from tests.unet_fixtures import perturb


def _frames_as_images(layer, x: torch.Tensor) -> torch.Tensor:
    return torch.stack([layer(x[:, :, i]) for i in range(x.shape[2])], dim=2)


@pytest.fixture
def video() -> torch.Tensor:
    return torch.randn(2, 8, 5, 4, 4, generator=torch.Generator().manual_seed(0))


def _conv() -> PseudoConv3d:
    torch.manual_seed(0)
    return PseudoConv3d(dim_in=8, dim_out=8)


def _attn(**kw) -> SpatioTemporalAttention:
    torch.manual_seed(0)
    return SpatioTemporalAttention(dim=8, num_heads=2, max_frames=5, **kw)


@pytest.mark.parametrize("make", [_conv, _attn], ids=["conv", "attention"])
def test_fresh_layer_acts_frame_by_frame(make, video):
    layer = make()
    image = layer(video[:, :, 0])
    assert image.shape == (2, 8, 4, 4)  # images (B, C, H, W) are taken as they are
    torch.testing.assert_close(layer(video), _frames_as_images(layer, video))


@pytest.mark.parametrize("make", [_conv, _attn], ids=["conv", "attention"])
def test_enable_time_false_is_per_frame_and_true_is_not(make, video):
    layer = perturb(make(), temporal_only=True)
    torch.testing.assert_close(layer(video, enable_time=False), _frames_as_images(layer, video))
    assert not torch.allclose(layer(video), _frames_as_images(layer, video), atol=1e-4)


@pytest.mark.parametrize("make", [_conv, _attn], ids=["conv", "attention"])
def test_built_without_time_has_no_temporal_params(make):
    kw = {"enable_time": False}
    layer = PseudoConv3d(dim_in=8, dim_out=8, **kw) if make is _conv else _attn(**kw)
    assert not [n for n, _ in layer.named_parameters() if "temporal" in n]


@pytest.mark.parametrize("make", [_conv, _attn], ids=["conv", "attention"])
def test_packed_image_frame_equals_the_image_alone(make, video):
    layer = perturb(make())
    mask = torch.tensor([[False, False, False, False, True]] * 2)
    packed = layer(video, image_frames=mask)
    torch.testing.assert_close(packed[:, :, 4], layer(video[:, :, 4:])[:, :, 0])
    # and the video frames do not see it
    other = video.clone()
    other[:, :, 4] += torch.randn(other[:, :, 4].shape)
    torch.testing.assert_close(layer(other, image_frames=mask)[:, :, :4], packed[:, :, :4])


def test_causal_time_ignores_the_future(video):
    conv = perturb(PseudoConv3d(dim_in=8, dim_out=8, causal_time=True))
    attn = perturb(_attn(causal_time=True))
    later = video.clone()
    later[:, :, 3:] += torch.randn(later[:, :, 3:].shape)
    for layer in (conv, attn):
        torch.testing.assert_close(layer(later)[:, :, :3], layer(video)[:, :, :3])
        assert not torch.allclose(layer(later)[:, :, 3], layer(video)[:, :, 3])


def test_focus_present_makes_frames_independent(video):
    attn = perturb(_attn())
    focus = torch.tensor([True, False])
    changed = video.clone()
    changed[:, :, 2] += torch.randn(changed[:, :, 2].shape)  # a constant would vanish in LayerNorm
    a, b = attn(video, focus_present=focus), attn(changed, focus_present=focus)
    keep = [0, 1, 3, 4]
    torch.testing.assert_close(a[0][:, keep], b[0][:, keep])  # focused: frames independent
    assert not torch.allclose(a[1][:, keep], b[1][:, keep])  # not focused: they mix


def test_text_cross_attention_reads_the_mask(video):
    attn = perturb(_attn(text_dim=6))
    text = torch.randn(2, 3, 6)
    mask = torch.tensor([[True, False, False], [True, True, False]])
    out = attn(video, text=text, text_mask=mask)
    text2 = text.clone()
    text2[0, 1:] += 5.0  # masked tokens of sample 0
    torch.testing.assert_close(attn(video, text=text2, text_mask=mask)[0], out[0])
    with pytest.raises(ValueError, match="text is required"):
        attn(video)


def test_bad_inputs_name_the_argument(video):
    with pytest.raises(ValueError, match="temporal_kernel_size"):
        PseudoConv3d(dim_in=8, dim_out=8, temporal_kernel_size=2)
    with pytest.raises(ValueError, match="image_frames"):
        _conv()(video, image_frames=torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="focus_present"):
        _attn()(video, focus_present=torch.zeros(3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        _attn()(video[0, 0])
