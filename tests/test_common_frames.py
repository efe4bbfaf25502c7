"""``common.frames.resize_frames`` equals ``F.interpolate`` applied to each frame on its own."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from common.frames import resize_frames


@pytest.mark.parametrize(
    ("kwargs", "shape"),
    [
        ({"scale_factor": 2, "mode": "nearest"}, (8, 10)),
        ({"scale_factor": 2, "mode": "bicubic"}, (8, 10)),
        ({"size": (3, 5), "mode": "bilinear", "antialias": True}, (3, 5)),
        ({"size": (6, 4), "mode": "area"}, (6, 4)),
    ],
)
def test_each_frame_is_resized_alone(kwargs: dict, shape: tuple[int, int]) -> None:
    video = torch.randn(2, 3, 4, 4, 5, generator=torch.Generator().manual_seed(0))
    out = resize_frames(video, **kwargs)
    assert out.shape == (2, 3, 4, *shape)
    extra = {"align_corners": False} if kwargs["mode"] in ("bilinear", "bicubic") else {}
    for b in range(2):
        for t in range(4):
            frame = F.interpolate(video[b : b + 1, :, t], **kwargs, **extra)
            torch.testing.assert_close(out[b : b + 1, :, t], frame, rtol=0, atol=0)
