"""Drift of long videos: per-chunk colour statistics and seam discontinuities."""

from __future__ import annotations

import numpy as np
import pytest

from tests.evaluate_fixtures import moving_video, smooth_video
from walt.evaluate.drift import chunk_starts, drift


def test_chunk_arithmetic_with_and_without_overlap():
    assert chunk_starts(20, chunk_frames=8) == [0, 8, 16]
    # First window K + N = 2 + 8 frames, then 8 new frames per extension.
    assert chunk_starts(26, chunk_frames=8, seam_overlap=2) == [0, 10, 18]
    with pytest.raises(ValueError, match="chunk_frames must be >= 1"):
        chunk_starts(10, chunk_frames=0)
    with pytest.raises(ValueError, match="seam_overlap must be >= 0"):
        chunk_starts(10, chunk_frames=4, seam_overlap=-1)


def test_constant_brightening_reports_rising_brightness():
    base = moving_video(frames=24, level=60, seed=0).astype(int)
    video = np.clip(base + 4 * np.arange(24)[:, None, None, None], 0, 255).astype(np.uint8)
    report = drift(video, chunk_frames=6)
    brightness = [c["brightness"] for c in report["chunks"]]
    assert len(brightness) == 4 and all(b > a + 0.05 for a, b in zip(brightness, brightness[1:]))
    means = np.array([c["mean"] for c in report["chunks"]])  # (chunks, RGB)
    assert (np.diff(means, axis=0) > 0.05).all()
    # A steady brightening continues across seams just as inside chunks: ratios ~ 1.
    assert all(0.8 < s["ratio"] < 1.25 for s in report["seams"])


def test_a_jump_at_one_seam_shows_only_there():
    video = smooth_video(32)
    video[16:] = np.clip(video[16:].astype(int) + 60, 0, 255).astype(np.uint8)  # seam 2 of N=8
    report = drift(video, chunk_frames=8)
    ratios = {s["seam"]: s["ratio"] for s in report["seams"]}
    assert [s["frames"] for s in report["seams"]] == [[7, 8], [15, 16], [23, 24]]
    assert ratios[2] > 5
    assert 0.8 < ratios[1] < 1.25 and 0.8 < ratios[3] < 1.25
    # With an overlap of 4 the chunks move and the jump is inside chunk 1, not at a seam.
    shifted = drift(video, chunk_frames=8, seam_overlap=4)
    assert [s["frames"] for s in shifted["seams"]] == [[11, 12], [19, 20], [27, 28]]
    assert all(s["ratio"] < 1.25 for s in shifted["seams"])


def test_single_frame_chunks_have_no_ratio_and_still_video_has_ratio_one():
    video = moving_video(frames=3, level=90, seed=2)
    assert all(s["ratio"] is None for s in drift(video, chunk_frames=1)["seams"])
    still = np.repeat(video[:1], 8, axis=0)
    assert [s["ratio"] for s in drift(still, chunk_frames=4)["seams"]] == [1.0]
