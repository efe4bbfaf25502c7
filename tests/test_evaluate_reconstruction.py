"""PSNR / SSIM against ground truth for reconstruction, prediction and interpolation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.evaluate_fixtures import moving_video, write_videos
from walt.evaluate.reconstruction import (
    reconstruction_draws,
    score_folder,
    score_pair,
    scored_frames,
)


def test_scored_frames_per_task():
    assert scored_frames(5, task="reconstruction") == [0, 1, 2, 3, 4]
    assert scored_frames(16, task="prediction", context_frames=5) == list(range(5, 16))
    assert scored_frames(9, task="interpolation", keyframe_every=4) == [1, 2, 3, 5, 6, 7]
    with pytest.raises(ValueError, match="context_frames must be in"):
        scored_frames(4, task="prediction", context_frames=4)
    with pytest.raises(ValueError, match="keyframe_every must be >= 2"):
        scored_frames(4, task="interpolation", keyframe_every=1)


def test_score_pair_only_scores_the_chosen_frames():
    truth = moving_video(frames=6, level=100, seed=0)
    pred = truth.copy()
    pred[:2] = 0  # wrong context frames: ignored when they are not scored
    pred[4] = np.clip(truth[4].astype(int) + 10, 0, 255).astype(np.uint8)
    clean = score_pair(pred, truth, [2, 3, 5], key="v")
    assert clean["psnr"] == pytest.approx(100.0) and clean["ssim"] == pytest.approx(1.0)
    # A uniform error of 10 / 255 on one of 4 frames: MSE = (10/255)^2 / 4.
    one = score_pair(pred, truth, [2, 3, 4, 5], key="v")
    assert one["psnr"] == pytest.approx(10 * math.log10(4 * (255 / 10) ** 2), abs=0.05)
    assert one["ssim"] < 1.0
    with pytest.raises(ValueError, match="v: generated frames are"):
        score_pair(pred[:, :8], truth, [0], key="v")
    with pytest.raises(ValueError, match="v: the reference has 6 frames"):
        score_pair(np.concatenate([pred, pred]), truth, [0], key="v")


def test_score_folder_pairs_by_key_and_names_missing_references(tmp_path):
    truth = write_videos(tmp_path / "truth", count=3, frames=6, level=100)
    same = write_videos(tmp_path / "same", count=2, frames=6, level=100)
    rows = score_folder(str(same), str(truth), task="prediction", context_frames=2)
    assert [r["key"] for r in rows] == ["v0", "v1"] and all(r["frames"] == 4 for r in rows)
    assert all(r["psnr"] > 60 and r["ssim"] > 0.999 for r in rows)
    other = write_videos(tmp_path / "other", count=2, frames=6, level=100, seed=10)
    worse = score_folder(str(other), str(truth), task="reconstruction")
    assert all(r["psnr"] < 30 for r in worse)
    write_videos(tmp_path / "extra", count=4, frames=6, level=100)
    with pytest.raises(ValueError, match="reference: no sample with the key of generated v3"):
        score_folder(str(tmp_path / "extra"), str(truth), task="reconstruction")
    summary = reconstruction_draws(worse, draw_size=1, num_draws=4, seed=0)
    assert set(summary) == {"psnr", "ssim"} and len(summary["psnr"]["draws"]) == 4
