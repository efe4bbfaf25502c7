"""Image-to-video inflation: a 2D U-Net's weights in the space-time U-Net give the 2D output per
frame; anything but missing temporal keys is refused; files and the training callback."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

from models import SpaceTimeUnet, Unet3D, inflate_from_2d
from models.unet import is_temporal_key, load_2d_state_dict
from tests.unet_fixtures import per_frame, perturb, tiny_unet
from walt.diffusion import GaussianDiffusion
from walt.lightning import InflateFrom2D, WALTModule

STEPS = torch.tensor([5.0, 900.0])


def _trained_2d(cls: type) -> torch.nn.Module:
    return perturb(tiny_unet(cls, enable_time=False), seed=3).eval()


@pytest.mark.parametrize("cls", [SpaceTimeUnet, Unet3D])
def test_inflated_output_equals_the_2d_model_per_frame(cls):
    image_model = _trained_2d(cls)
    video_model = tiny_unet(cls)
    missing = inflate_from_2d(video_model, image_model.state_dict())
    temporal = sorted(k for k in video_model.state_dict() if is_temporal_key(k))
    assert missing == temporal and missing
    x = torch.randn(2, 3, 5, 4, 4)
    labels = torch.tensor([1, 2])
    torch.testing.assert_close(
        video_model.eval()(x, STEPS, class_labels=labels),
        per_frame(image_model, x, STEPS, class_labels=labels),
    )


def test_inflation_refuses_other_mismatches():
    state = _trained_2d(SpaceTimeUnet).state_dict()
    video_model = tiny_unet(SpaceTimeUnet)
    cases = {
        "keys the model lacks": {**state, "extra.weight": torch.zeros(1)},
        "shape mismatches": {**state, "out_conv.spatial.bias": torch.zeros(7)},
        "non-temporal keys missing": {k: v for k, v in state.items() if k != "init_conv.spatial.bias"},
        "temporal keys in the 2D weights": {
            **state, "init_conv.temporal.bias": video_model.state_dict()["init_conv.temporal.bias"]
        },
    }
    before = {k: v.clone() for k, v in video_model.state_dict().items()}
    for match, bad in cases.items():
        with pytest.raises(ValueError, match=match):
            inflate_from_2d(video_model, bad)
    # nothing was loaded by a refused call
    for k, v in video_model.state_dict().items():
        torch.testing.assert_close(v, before[k])
    with pytest.raises(ValueError, match="shape mismatches"):  # another width
        inflate_from_2d(video_model, tiny_unet(SpaceTimeUnet, dim=16, enable_time=False).state_dict())


def test_2d_weights_load_from_checkpoint_and_safetensors(tmp_path):
    state = _trained_2d(Unet3D).state_dict()
    ckpt = tmp_path / "image.ckpt"
    torch.save({"state_dict": {f"ema.module.{k}": v for k, v in state.items()}}, ckpt)
    st = tmp_path / "image.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(st))
    for path in (ckpt, st):
        loaded = load_2d_state_dict(path)
        assert loaded.keys() == state.keys()
        assert all(torch.equal(loaded[k], state[k]) for k in state)
    with pytest.raises(ValueError, match="prefix"):
        load_2d_state_dict(ckpt, prefix="backbone.")
    with pytest.raises(FileNotFoundError):
        load_2d_state_dict(tmp_path / "missing.ckpt")


def test_callback_inflates_backbone_and_ema_on_a_fresh_fit(tmp_path):
    image_model = _trained_2d(SpaceTimeUnet)
    path = tmp_path / "image.safetensors"
    save_file({k: v.contiguous() for k, v in image_model.state_dict().items()}, str(path))
    module = WALTModule(backbone=tiny_unet(SpaceTimeUnet), diffusion=GaussianDiffusion(),
                        tokenizer="pixels", latent_channels=3, num_frames=5, size=4)
    callback = InflateFrom2D(weights=str(path))
    callback.on_fit_start(SimpleNamespace(ckpt_path="resume.ckpt"), module)  # resuming: untouched
    key = "out_conv.spatial.weight"
    assert not torch.equal(module.backbone.state_dict()[key], image_model.state_dict()[key])
    callback.on_fit_start(SimpleNamespace(ckpt_path=None), module)
    for net in (module.backbone, module.ema.module):
        torch.testing.assert_close(net.state_dict()[key], image_model.state_dict()[key])
