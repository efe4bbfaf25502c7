"""Every ``python -m walt.evaluate`` subcommand end to end on tiny mp4s, writing its JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data.encode import write_mp4
from data.make_shards import write_shards
from tests.evaluate_fixtures import (
    FakeI3D,
    FakeInception,
    moving_video,
    save_script,
    smooth_video,
    write_videos,
)
from walt.evaluate.__main__ import main
from walt.evaluate.features import file_sha256


@pytest.fixture
def i3d(tmp_path):
    return save_script(FakeI3D(), tmp_path / "i3d_torchscript.pt")


@pytest.fixture
def inception(tmp_path):
    return save_script(FakeInception(), tmp_path / "inception.pt")


def _json(path):
    return json.loads(path.read_text())


def test_fvd_folder_against_shards(tmp_path, i3d, capsys):
    gen = write_videos(tmp_path / "gen", count=4, frames=16, level=60)
    write_mp4(moving_video(frames=8, level=60, seed=9), gen / "short.mp4")  # skipped: < 16
    ref = write_videos(tmp_path / "ref", count=4, frames=18, level=160, seed=20)
    write_shards(ref, str(tmp_path / "shards" / "ref-%06d.tar"), progress=False)
    out = tmp_path / "out" / "fvd.json"
    argv = ["fvd", str(gen), str(tmp_path / "shards" / "ref-000000.tar"), "--i3d", str(i3d)]
    main([*argv, "--num-draws", "3", "--draw-size", "3", "--json", str(out)])
    result = _json(out)
    assert result["num_generated"] == 4 and result["num_reference"] == 4
    assert result["network"]["sha256"] == file_sha256(i3d)
    assert file_sha256(i3d) in capsys.readouterr().out
    assert len(result["fvd"]["draws"]) == 3 and result["fvd"]["mean"] > 0
    # The same videos on both sides (16 frames: one possible clip start): distance ~0.
    same = main(["fvd", str(gen), str(gen), "--i3d", str(i3d), "--json", str(out)])
    assert abs(same["fvd"]["mean"]) < 1e-6 < result["fvd"]["mean"]


def test_fid_and_is_on_frames_and_images(tmp_path, inception):
    gen = write_videos(tmp_path / "gen", count=2, frames=5, level=80)
    ref = tmp_path / "ref"
    ref.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(ref / f"{i}.png")
    out = tmp_path / "fid.json"
    fid = main(
        [
            "fid",
            str(gen),
            str(ref),
            "--inception",
            str(inception),
            "--num-frames",
            "3",
            "--json",
            str(out),
        ]
    )
    assert _json(out)["fid"] == fid["fid"] and fid["fid"]["mean"] > 0
    assert fid["num_generated"] == 6 and fid["num_reference"] == 6  # 2 videos x 3 frames
    out = tmp_path / "is.json"
    main(
        [
            "is",
            str(gen),
            "--inception",
            str(inception),
            "--num-draws",
            "2",
            "--draw-size",
            "4",
            "--json",
            str(out),
        ]
    )
    score = _json(out)["is"]
    assert len(score["draws"]) == 2 and 1.0 <= score["mean"] <= 5.0  # 5 classes


def test_psnr_for_interpolation(tmp_path):
    truth = write_videos(tmp_path / "truth", count=2, frames=9, level=100)
    gen = tmp_path / "gen"
    for i in range(2):
        video = moving_video(frames=9, level=100, seed=i)
        video[1:4] = np.clip(video[1:4].astype(int) + 30, 0, 255).astype(np.uint8)
        write_mp4(video, gen / f"v{i}.mp4")
    out = tmp_path / "psnr.json"
    main(
        [
            "psnr",
            str(gen),
            str(truth),
            "--task",
            "interpolation",
            "--keyframe-every",
            "4",
            "--json",
            str(out),
        ]
    )
    result = _json(out)
    assert result["task"] == "interpolation" and [v["frames"] for v in result["videos"]] == [6, 6]
    assert 10 < result["psnr"]["mean"] < 40 and result["ssim"]["mean"] < 1


def test_drift_on_a_video_with_a_jump(tmp_path, capsys):
    video = smooth_video(24)
    video[8:] = np.clip(video[8:].astype(int) + 70, 0, 255).astype(np.uint8)
    folder = tmp_path / "long"
    write_mp4(video, folder / "long.mp4")
    out = tmp_path / "drift.json"
    main(["drift", str(folder), "--chunk-frames", "8", "--json", str(out)])
    (report,) = _json(out)["videos"].values()
    ratios = [s["ratio"] for s in report["seams"]]
    assert ratios[0] > 3 and ratios[1] < 2
    brightness = [c["brightness"] for c in report["chunks"]]
    assert brightness[1] > brightness[0] + 0.2
    assert "seam 1" in capsys.readouterr().out


@pytest.mark.slow  # a fresh interpreter imports torch: several seconds
def test_python_dash_m_entry_point(tmp_path):
    write_mp4(smooth_video(12), tmp_path / "v.mp4")
    out = tmp_path / "drift.json"
    cmd = [
        sys.executable,
        "-m",
        "walt.evaluate",
        "drift",
        str(tmp_path / "v.mp4"),
        "--chunk-frames",
        "4",
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(
        [*cmd, "--json", str(out)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert [s["frames"] for s in _json(out)["videos"]["v.mp4"]["seams"]] == [[3, 4], [7, 8]]
