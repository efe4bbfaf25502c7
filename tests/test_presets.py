"""A preset plus overrides, for both models, from Python and from YAML."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from jsonargparse import ArgumentParser

from common.registry import build
from models import DIT_PRESETS, WindowedDiT
from tokenizer import PRESETS, CausalVAE

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "walt"


def _sizes(model: WindowedDiT) -> tuple[int, int, int]:
    return model.pos_embed.temporal.shape[-1], len(model.blocks), model.blocks[0].attn.num_heads


def test_backbone_preset_with_override():
    with torch.device("meta"):
        model = WindowedDiT(preset="L", depth=2, num_classes=101)
    assert _sizes(model) == (DIT_PRESETS["L"]["hidden_size"], 2, DIT_PRESETS["L"]["num_heads"])
    assert model.num_classes == 101
    with pytest.raises(KeyError, match=r"unknown WindowedDiT preset 'Q'.*'L', 'S', 'XL'"):
        WindowedDiT(preset="Q")
    with pytest.raises(ValueError, match="depth"):
        WindowedDiT(preset=None, hidden_size=64, num_heads=4)


def test_tokenizer_preset_with_override():
    with torch.device("meta"):
        vae = CausalVAE(preset="tiny", base_channels=8, groups=4)
    assert vae.config["base_channels"] == 8 and vae.config["groups"] == 4
    assert vae.config["channel_mults"] == PRESETS["tiny"]["channel_mults"]
    with pytest.raises(KeyError, match=r"unknown tokenizer preset 'big'.*'tiny', 'walt'"):
        CausalVAE(preset="big")


def test_yaml_names_a_preset_plus_overrides():
    parser = ArgumentParser()
    parser.add_argument("--backbone", type=torch.nn.Module)
    spec = {"class_path": "models.WindowedDiT",
            "init_args": {"preset": "XL", "depth": 2, "num_classes": 3}}
    with torch.device("meta"):
        model = parser.instantiate_classes(parser.parse_object({"backbone": spec})).backbone
    assert _sizes(model) == (1152, 2, 16) and model.num_classes == 3


@pytest.mark.parametrize(("name", "preset"), [("ucf101_L", "L"), ("ucf101_XL", "XL")])
def test_shipped_configs_name_their_preset(name, preset):
    spec = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())["model"]["init_args"]["backbone"]
    assert spec["init_args"]["preset"] == preset
    assert not {"hidden_size", "depth", "num_heads"} & set(spec["init_args"])
    with torch.device("meta"):
        model = build("backbone", spec)
    want = DIT_PRESETS[preset]
    assert _sizes(model) == (want["hidden_size"], want["depth"], want["num_heads"])
