"""Every set-scoring ``walt.evaluate`` subcommand skips an undecodable file, naming it in a
warning, and stops only past the loader's failure fraction (as ``drift`` does)."""

from __future__ import annotations

import numpy as np
import pytest

import data.pipeline as pipeline
import walt.evaluate.reconstruction as reconstruction
from data.encode import write_mp4
from data.pipeline import BadSampleWarning, TooManyFailuresError
from tests.evaluate_fixtures import FakeI3D, FakeInception, moving_video, save_script, write_videos
from walt.evaluate.__main__ import main


def _corrupt(path):
    """Random bytes under a video's name (sorted first in its folder: ``bad.mp4``)."""
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 2048, dtype=np.uint8).tobytes())
    return path


def _fvd(tmp_path):
    gen = write_videos(tmp_path / "gen", count=3, frames=16, level=60)
    ref = write_videos(tmp_path / "ref", count=3, frames=16, level=160, seed=20)
    i3d = save_script(FakeI3D(), tmp_path / "i3d.pt")
    expected = {"num_generated": 3, "num_reference": 3}
    return ["fvd", str(gen), str(ref), "--i3d", str(i3d)], _corrupt(gen / "bad.mp4"), expected


def _fid(tmp_path):
    gen = write_videos(tmp_path / "gen", count=2, frames=2, level=60)
    ref = write_videos(tmp_path / "ref", count=2, frames=2, level=160, seed=20)
    net = save_script(FakeInception(), tmp_path / "inception.pt")
    bad = _corrupt(ref / "bad.mp4")
    expected = {"num_generated": 4, "num_reference": 4}  # 2 videos x 2 frames
    return ["fid", str(gen), str(ref), "--inception", str(net), "--num-frames", "2"], bad, expected


def _is(tmp_path):
    gen = write_videos(tmp_path / "gen", count=2, frames=2, level=60)
    net = save_script(FakeInception(), tmp_path / "inception.pt")
    bad = _corrupt(gen / "bad.mp4")
    return ["is", str(gen), "--inception", str(net), "--num-frames", "2"], bad, {"num_generated": 4}


def _psnr(side):
    def build(tmp_path):
        folders = {name: write_videos(tmp_path / name, count=3, frames=3, level=90)
                   for name in ("gen", "ref")}
        bad = _corrupt(folders[side] / "v1.mp4")  # its pair is skipped, not a missing key
        return ["psnr", str(folders["gen"]), str(folders["ref"])], bad, {"videos": ["v0", "v2"]}
    return build


@pytest.mark.parametrize("build", [_fvd, _fid, _is, _psnr("gen"), _psnr("ref")],
                         ids=["fvd", "fid", "is", "psnr-generated", "psnr-reference"])
def test_skips_an_undecodable_file_and_names_it(tmp_path, build):
    argv, bad, expected = build(tmp_path)
    with pytest.warns(BadSampleWarning, match=f"skipping unreadable {bad}"):
        result = main(argv)
    if "videos" in result:  # psnr: one row per scored pair
        result["videos"] = [row["key"] for row in result["videos"]]
    assert {key: result[key] for key in expected} == expected


@pytest.mark.parametrize("build", [_fid, _psnr("gen")], ids=["fid", "psnr"])
def test_stops_past_the_failure_fraction(tmp_path, build, monkeypatch):
    for module in (pipeline, reconstruction):
        monkeypatch.setattr(module, "FAILURE_CHECK_AFTER", 2)
    argv, bad, _ = build(tmp_path)
    for other in sorted(bad.parent.glob("v*.mp4"))[:2]:
        _corrupt(other)  # most files bad: over the fraction once 2 were seen
    with pytest.warns(BadSampleWarning), pytest.raises(TooManyFailuresError, match="failed"):
        main(argv)


def test_super_resolution_skips_an_undecodable_reference(tmp_path, monkeypatch):
    import walt.core.loading as loading
    from tests.walt_fixtures import FRAMES, SR_SIZE, tiny_sr_module, tiny_tokenizer_file

    tok = tiny_tokenizer_file(tmp_path / "tiny.safetensors")
    ref = tmp_path / "ref"
    for i in range(2):
        write_mp4(moving_video(frames=FRAMES, level=90, seed=i, size=SR_SIZE), ref / f"v{i}.mp4")
    bad = _corrupt(ref / "bad.mp4")
    monkeypatch.setattr(loading, "load_walt_checkpoint",
                        lambda path, map_location=None, **kw: tiny_sr_module(tok, **kw))
    with pytest.warns(BadSampleWarning, match=f"skipping unreadable {bad}"):
        result = main(["sr", "sr.ckpt", str(ref), "--num-clips", "2", "--batch-size", "2",
                       "--num-inference-steps", "1"])
    assert result["num_clips"] == 2
