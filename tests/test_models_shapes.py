"""Output shapes, patch sizes, padding and position-table interpolation of WindowedDiT."""

from __future__ import annotations

import pytest
import torch

from models import WindowedDiT


def _randomize(model: torch.nn.Module) -> None:
    """Give every parameter (zero-initialised gates and heads included) random values."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.05)


def _tiny(**overrides) -> WindowedDiT:
    torch.manual_seed(0)
    cfg = {"max_latent_size": (5, 8, 8), "spatiotemporal_window": (5, 4, 4)}
    return WindowedDiT.from_preset("tiny", **{**cfg, **overrides})


@pytest.mark.parametrize("patch_size", [1, 2, 4])
@pytest.mark.parametrize("t", [1, 3, 5])
def test_output_shape_matches_latent(patch_size: int, t: int) -> None:
    model = _tiny(patch_size=patch_size)
    _randomize(model)
    x = torch.randn(2, 8, t, 8, 8)
    y = model(x, torch.tensor([10.0, 900.0]))
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


@pytest.mark.parametrize(
    ("grid", "spatial_window", "st_window"),
    [
        ((5, 6, 10), (4, 4), (5, 4, 4)),
        ((7, 9, 5), None, (5, 4, 4)),
        ((2, 12, 12), (8, 8), (2, 8, 8)),
    ],
)
def test_non_divisible_grids_pad_and_mask(grid, spatial_window, st_window) -> None:
    model = _tiny(spatial_window=spatial_window, spatiotemporal_window=st_window)
    _randomize(model)
    x = torch.randn(1, 8, *grid)
    y = model(x, torch.tensor([3.0]))
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    # Samples stay independent under padding masks: a batch of two gives the same first sample.
    y2 = model(torch.cat([x, x]), torch.tensor([3.0, 3.0]))
    torch.testing.assert_close(y2[0], y[0], rtol=1e-5, atol=1e-5)


def test_mixed_steps_image_and_video_batches_share_one_model() -> None:
    model = _tiny(out_channels=16)
    _randomize(model)
    images = torch.randn(3, 8, 1, 8, 8)
    videos = torch.randn(2, 8, 5, 8, 8)
    y_img = model(images, torch.tensor([1.0, 2.0, 3.0]))
    y_vid = model(videos, torch.tensor([4.0, 5.0]))
    assert y_img.shape == (3, 16, 1, 8, 8)
    assert y_vid.shape == (2, 16, 5, 8, 8)


def test_output_is_zero_at_init() -> None:
    """The zero-initialised head (DiT) makes the untrained model predict exactly zero."""
    model = _tiny()
    y = model(torch.randn(1, 8, 5, 8, 8), torch.tensor([5.0]))
    assert torch.equal(y, torch.zeros_like(y))


def test_patch_size_must_divide_latent() -> None:
    model = _tiny(patch_size=2)
    with pytest.raises(ValueError, match="patch_size"):
        model(torch.randn(1, 8, 1, 7, 8), torch.tensor([1.0]))


def test_bad_shapes_are_named() -> None:
    model = _tiny()
    with pytest.raises(ValueError, match="x must be"):
        model(torch.randn(1, 4, 1, 8, 8), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="timesteps"):
        model(torch.randn(2, 8, 1, 8, 8), torch.tensor([1.0]))
    with pytest.raises(KeyError, match="unknown WindowedDiT preset"):
        WindowedDiT.from_preset("huge")


@pytest.mark.parametrize("size", [(5, 8, 12), (5, 12, 8), (3, 4, 4), (8, 8, 8)])
def test_position_tables_interpolate_on_the_fly(size) -> None:
    model = _tiny()
    _randomize(model)
    y = model(torch.randn(1, 8, *size), torch.tensor([7.0]))
    assert y.shape == (1, 8, *size)
    assert torch.isfinite(y).all()


def test_resize_pos_embed_matches_on_the_fly_interpolation() -> None:
    model = _tiny()
    _randomize(model)
    x = torch.randn(1, 8, 5, 8, 14)
    before = model(x, torch.tensor([7.0]))
    model.resize_pos_embed((5, 8, 14))
    assert model.pos_embed.spatial.shape == (8, 14, 64)
    after = model(x, torch.tensor([7.0]))
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)


def test_set_windows_regrids_relative_tables_and_runs() -> None:
    """The 128x224 fine-tune: whole-frame S windows and wider ST windows (5x8x8 -> 5x8x14)."""
    model = _tiny(max_latent_size=(5, 16, 16), spatiotemporal_window=(5, 8, 8))
    _randomize(model)
    model.resize_pos_embed((5, 16, 28))
    model.set_windows(spatial_window=None, spatiotemporal_window=(5, 8, 14))
    assert model.blocks[1].rel_pos.table.shape[1:] == (9, 15, 27)
    y = model(torch.randn(1, 8, 5, 16, 28), torch.tensor([7.0]))
    assert y.shape == (1, 8, 5, 16, 28)
    assert torch.isfinite(y).all()
