"""Training zoom (scale augmentation): crops at up to ``high`` times the scale of ``size``."""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from data.datamodule import WebVideoDataModule
from data.transforms import check_zoom, check_zoom_choices, draw_zoom, frames_to_pixels


def _frame(size: int = 16) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (1, size, size, 3), dtype=np.uint8)


def test_zoom_one_is_the_plain_resize() -> None:
    frames = _frame()
    plain = frames_to_pixels(frames, size=(8, 8))
    assert torch.equal(frames_to_pixels(frames, size=(8, 8), zoom=1.0), plain)


def test_zoom_two_of_a_double_size_frame_is_a_native_crop() -> None:
    frames = _frame(16)
    rng = random.Random(3)
    crop = frames_to_pixels(frames, size=(8, 8), crop="random", rng=rng, zoom=2.0)
    native = torch.from_numpy(frames[0]).permute(2, 0, 1).float() / 127.5 - 1.0  # (3, 16, 16)
    windows = [native[:, i : i + 8, j : j + 8] for i in range(9) for j in range(9)]
    assert any(torch.allclose(crop[:, 0], w) for w in windows)
    assert not torch.allclose(crop, frames_to_pixels(frames, size=(8, 8)))


BAD_ZOOMS = [("zoom", check_zoom, bad) for bad in (0.5, [2.0, 1.5], [0.9, 2.0], [1.0, 2.0, 3.0])]
BAD_ZOOMS += [("zoom_choices", check_zoom_choices, bad) for bad in ([], [0.5, 2.0], 2.0)]


@pytest.mark.parametrize("name, check, bad", BAD_ZOOMS)
def test_bad_zooms_raise(name, check, bad) -> None:
    """A bad zoom range or zoom set is refused by its check and by the data module."""
    with pytest.raises(ValueError, match=name):
        check(bad)
    with pytest.raises(ValueError, match=name):
        WebVideoDataModule(train_images="x.tar", **{name: bad})


def test_zoom_draws_inside_its_range() -> None:
    rng = random.Random(0)
    draws = [draw_zoom((1.0, 2.0), rng) for _ in range(200)]
    assert min(draws) >= 1.0 and max(draws) <= 2.0 and max(draws) - min(draws) > 0.5
    assert draw_zoom(None, rng) == 1.0 and check_zoom(1.5) == (1.5, 1.5)


def test_zoom_choices_draw_only_their_factors() -> None:
    rng = random.Random(0)
    draws = [draw_zoom(None, rng, choices=(1.0, 2.0)) for _ in range(200)]
    assert set(draws) == {1.0, 2.0} and 60 < draws.count(2.0) < 140
    assert check_zoom_choices([1, 2]) == (1.0, 2.0) and check_zoom_choices(None) is None


def test_zoom_range_and_choices_are_exclusive() -> None:
    with pytest.raises(ValueError, match="not both"):
        WebVideoDataModule(train_images="x.tar", zoom=[1, 2], zoom_choices=[1, 2])


def _png_shard(path: Path) -> str:
    rng = np.random.default_rng(1)
    with wds.TarWriter(str(path)) as sink:
        for i in range(4):
            buffer = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(buffer, format="png")
            sink.write({"__key__": f"i{i}", "png": buffer.getvalue()})
    return str(path)


def test_validation_is_never_zoomed_and_training_is(tmp_path: Path) -> None:
    shard = _png_shard(tmp_path / "img.tar")

    def pixels(split: str, zoom, choices=None) -> torch.Tensor:
        module = WebVideoDataModule(
            train_images=shard, val_images=shard, size=8, batch_size=4, num_workers=0,
            shuffle_buffer=0, zoom=zoom, zoom_choices=choices,
        )
        module.setup("fit")
        if split == "val":
            (batch,) = list(module.val_dataloader())
        else:
            batch = next(iter(module.train_dataloader()))[0]
        return batch["image"]["pixels"]

    assert torch.equal(pixels("val", [2.0, 2.0]), pixels("val", None))
    # Zoom 2 of 16-pixel images at size 8: native pixels, so values stay on the uint8 grid.
    zoomed = (pixels("train", [2.0, 2.0]) + 1.0) * 127.5
    assert torch.allclose(zoomed, zoomed.round(), atol=1e-3)
    plain = (pixels("train", None) + 1.0) * 127.5
    assert not torch.allclose(plain, plain.round(), atol=1e-3)
    # A one-factor set is that fixed zoom: training native pixels, validation untouched.
    chosen = (pixels("train", None, [2.0]) + 1.0) * 127.5
    assert torch.allclose(chosen, chosen.round(), atol=1e-3)
    assert torch.equal(pixels("val", None, [2.0]), pixels("val", None))
