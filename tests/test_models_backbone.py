"""The backbone interface: every registered backbone declares its inputs (models.backbone), the
declaration is true (declared inputs are taken, others refused), and BackboneInputs.of reads it."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from common.registry import registered
from models.backbone import DECLARATION, Backbone, missing_declaration
from models.conditioning import ConditionedBackbone
from tests.unet_fixtures import TINY as TINY_UNET
from walt.core.backbone_inputs import BackboneInputs

C = 4  # latent channels
# Tiny constructor arguments of each registered backbone; a backbone registered without an
# entry here fails test_every_registered_backbone_is_covered.
TINY = {
    "WindowedDiT": dict(preset=None, hidden_size=32, depth=2, num_heads=4,
                        spatiotemporal_window=(2, 2, 2), max_latent_size=(3, 4, 4)),
    "SpaceTimeUnet": TINY_UNET,
    "Unet3D": TINY_UNET,
}
VARIANTS = {
    "plain": dict(use_self_cond=False, use_frame_cond=False),
    "labels_text_scalars": dict(num_classes=3, text_dim=6, num_extra_cond=2),
    "self_and_frames": dict(use_self_cond=True, use_frame_cond=True),
    "super_resolution": dict(lowres_channels=C, num_extra_cond=1),
}
CASES = [(name, variant) for name in TINY for variant in VARIANTS]


def _takes(cls: type, option: str) -> bool:
    return option in inspect.signature(cls.__init__).parameters


def _build(name: str, variant: str) -> nn.Module:
    cls = registered("backbone")[name]
    options = VARIANTS[variant]
    absent = [key for key in options if not (_takes(cls, key) or _takes(cls.__mro__[1], key))]
    if absent:
        pytest.skip(f"{name} has no option {absent}")
    torch.manual_seed(0)
    return cls(in_channels=C, **TINY[name], **options)


def _inputs(inputs: BackboneInputs, *, b: int = 2, t: int = 3, h: int = 4, w: int = 4) -> dict:
    """One keyword input per condition ``inputs`` says the backbone takes."""
    kw = {}
    if inputs.labels:
        kw["class_labels"] = torch.tensor([0, inputs.num_classes - 1])
    if inputs.text:
        kw["text_emb"], kw["text_mask"] = torch.randn(b, 5, 6), torch.ones(b, 5, dtype=torch.bool)
    if inputs.extra:
        kw["extra_cond"] = torch.rand(b, inputs.extra)
    if inputs.self_cond:
        kw["self_cond"] = torch.randn(b, C, t, h, w)
    if inputs.frames:
        kw["frame_cond"] = torch.randn(b, C + 1, t, h, w)
    if inputs.lowres:
        kw["lowres"] = torch.randn(b, inputs.lowres, t, h // 2, w // 2)
    return kw


def test_every_registered_backbone_is_covered():
    assert set(registered("backbone")) <= set(TINY), "give the new backbone tiny arguments"


def test_registered_backbones_share_the_conditioning_and_the_input_channels():
    for cls in registered("backbone").values():
        assert issubclass(cls, ConditionedBackbone)
        assert cls._conditioning is ConditionedBackbone._conditioning
        assert cls._input_channels is ConditionedBackbone._input_channels


@pytest.mark.parametrize(("name", "variant"), CASES)
def test_backbone_declares_what_it_was_built_with(name, variant):
    net = _build(name, variant)
    assert isinstance(net, Backbone) and missing_declaration(net) == []
    built = {key: getattr(net, key) for key in DECLARATION}
    for key, value in {"in_channels": C, "out_channels": C, **VARIANTS[variant]}.items():
        assert built[key] == value, key
    assert BackboneInputs.of(net) == BackboneInputs(
        labels=built["num_classes"] > 0,
        text=built["text_dim"] > 0,
        frames=built["use_frame_cond"],
        self_cond=built["use_self_cond"],
        extra=built["num_extra_cond"],
        num_classes=built["num_classes"],
        lowres=built["lowres_channels"],
    )


@pytest.mark.parametrize(("name", "variant"), CASES)
def test_declaration_is_true(name, variant):
    """The inputs BackboneInputs.of reads are taken; every other one is refused by name."""
    net = _build(name, variant).eval()
    inputs = BackboneInputs.of(net)
    x, timesteps = torch.randn(2, C, 3, 4, 4), torch.tensor([3, 900])
    with torch.no_grad():
        assert net(x, timesteps, **_inputs(inputs)).shape == x.shape
    everything = _inputs(BackboneInputs(labels=True, text=True, frames=True, self_cond=True,
                                        extra=inputs.extra or 1, num_classes=3, lowres=C))
    taken = _inputs(inputs)
    for key in everything.keys() - taken.keys() - {"text_mask"}:
        with pytest.raises((ValueError, TypeError), match=key):
            net(x, timesteps, **{**taken, key: everything[key]})


def test_of_refuses_a_module_without_the_declaration():
    class Bare(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.in_channels = self.out_channels = C

        def forward(self, x, timesteps, **inputs):
            return x

    with pytest.raises(TypeError, match="num_classes.*lowres_channels"):
        BackboneInputs.of(Bare())
