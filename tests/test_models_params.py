"""Parameter counts of the paper's sizes (W.A.L.T Table 8), counted on the meta device."""

from __future__ import annotations

import pytest
import torch

from models import DIT_PRESETS, WindowedDiT


@pytest.mark.parametrize(
    ("preset", "adaln", "num_classes", "paper_millions"),
    [
        ("L", "lora", 101, 313.0),
        ("L", "lora", 1000, 313.0),
        ("L", "classic", 101, 458.0),
        ("L", "classic", 1000, 458.0),
        ("XL", "lora", 101, 460.0),
        ("XL", "lora", 1000, 460.0),
    ],
)
def test_param_count_within_3_percent_of_paper(preset, adaln, num_classes, paper_millions) -> None:
    # c = 8, p = 1, self-cond and frame-cond input channels, 5x16x16 position tables.
    with torch.device("meta"):
        model = WindowedDiT.from_preset(preset, adaln=adaln, num_classes=num_classes)
    millions = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(millions - paper_millions) / paper_millions < 0.03, millions


def test_lora_rank_256_adds_about_44m() -> None:
    """Paper: r = 2 -> 313M, r = 256 -> 357M."""
    with torch.device("meta"):
        model = WindowedDiT.from_preset("L", num_classes=101, adaln_lora_rank=256)
    millions = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(millions - 357.0) / 357.0 < 0.03, millions


def test_presets_have_the_paper_sizes() -> None:
    assert DIT_PRESETS["L"] == {"depth": 24, "hidden_size": 1024, "num_heads": 16}
    assert DIT_PRESETS["XL"] == {"depth": 28, "hidden_size": 1152, "num_heads": 16}
    model = WindowedDiT.from_preset("tiny", depth=2)
    assert len(model.blocks) == 2
    assert [b.kind for b in model.blocks] == ["spatial", "spatiotemporal"]
