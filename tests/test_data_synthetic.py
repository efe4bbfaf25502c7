"""Synthetic moving-shapes shards (determinism, labels, metadata), the shape detector's
accuracy on clean and degraded clips, and the shard writer's sidecars and labels."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import webdataset as wds

from data.datamodule import WebVideoDataModule
from data.make_shards import main as make_shards_main
from data.shape_detector import detect_shape, parse_class_name, score_samples
from data.synthetic import (
    COLORS,
    DIRECTIONS,
    SHAPES,
    WRAP_SPEED,
    class_list,
    class_names,
    render_clip,
    write_synthetic,
)
from data.synthetic import main as synthetic_main


def _digest(folder: Path) -> list[str]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.tar"))]


def _samples(pattern: str) -> list[dict]:
    return list(wds.WebDataset(pattern, shardshuffle=False))


@pytest.fixture(scope="module")
def shapes_shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("shapes")
    summary = write_synthetic(str(out / "s-%06d.tar"), num_videos=72, num_images=4, seed=5,
                              samples_per_shard=40)
    return out, summary


def test_synthetic_is_deterministic(tmp_path: Path) -> None:
    def write(name: str, seed: int) -> list[str]:
        write_synthetic(str(tmp_path / name / "s-%06d.tar"), num_videos=8, num_images=2,
                        seed=seed, samples_per_shard=6)
        return _digest(tmp_path / name)

    first = write("a", 5)
    assert write("b", 5) == first and len(first) == 2
    assert write("c", 6) != first


def test_synthetic_labels_and_metadata(shapes_shards: tuple[Path, dict]) -> None:
    folder, summary = shapes_shards
    samples = _samples(str(folder / "s-{000000..000001}.tar"))
    assert len(samples) == 76 and len(summary["class_names"]) == 72
    for sample in samples:
        meta = json.loads(sample["json"])
        label = int(sample["cls"])
        assert meta["class_names"][label] == meta["class_name"]
        assert sample["txt"].decode() == f"a {meta['class_name']}"
        frames = 1 if "png" in sample else 17
        assert np.array(meta["trajectory"]).shape == (frames, 2)
    assert class_names(["circle"], ["red", "blue"], ["left"]) == [
        "red circle moving left", "blue circle moving left"]


def test_synthetic_cli_subsets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = synthetic_main([str(tmp_path / "s-%06d.tar"), "--num-videos", "4", "--frames", "5",
                           "--shapes", "square", "--colors", "green", "--directions", "up,down"])
    assert code == 0 and "2 classes" in capsys.readouterr().out
    names = {s["txt"].decode() for s in _samples(str(tmp_path / "s-000000.tar"))}
    assert names == {"a green square moving up", "a green square moving down"}
    with pytest.raises(ValueError, match="unknown or empty shape"):
        write_synthetic(str(tmp_path / "x-%06d.tar"), shapes=["hexagon"])


@pytest.fixture(scope="module")
def decoded(shapes_shards: tuple[Path, dict]) -> tuple[torch.Tensor, list[str]]:
    folder, summary = shapes_shards
    module = WebVideoDataModule(val_videos=str(folder / "s-{000000..000001}.tar"), size=64,
                                batch_size=36, num_workers=0)
    module.setup("validate")
    videos, names = [], []
    for batch in module.val_dataloader():
        videos.append(batch["video"]["pixels"])
        names += [summary["class_names"][i] for i in batch["video"]["label"]]
    return torch.cat(videos), names


def _blur(videos: torch.Tensor) -> torch.Tensor:
    kernel = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
    kernel = (kernel[:, None] * kernel[None]) / 256
    b, c, t, h, w = videos.shape
    flat = videos.permute(0, 2, 1, 3, 4).reshape(b * t * c, 1, h, w)
    flat = F.conv2d(F.pad(flat, (2, 2, 2, 2), mode="replicate"), kernel[None, None])
    return flat.reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4)


@pytest.mark.parametrize("degrade", ["clean", "blur", "noise", "downup"])
def test_detector_accuracy(decoded: tuple[torch.Tensor, list[str]], degrade: str) -> None:
    videos, names = decoded
    assert videos.shape == (72, 3, 17, 64, 64)
    torch.manual_seed(0)
    if degrade == "blur":
        videos = _blur(videos)
    elif degrade == "noise":
        videos = (videos + 0.08 * torch.randn_like(videos)).clamp(-1, 1)
    elif degrade == "downup":  # like an 8x-compressing autoencoder's loss of detail, mildly
        small = F.interpolate(videos.flatten(1, 2), scale_factor=0.5, mode="area")
        videos = F.interpolate(small, scale_factor=2, mode="bilinear").view_as(videos)
    scores = score_samples(videos, names)
    assert scores["color"] == 1.0 and scores["direction"] == 1.0
    assert scores["shape"] >= (1.0 if degrade == "clean" else 0.95)
    assert scores["joint"] >= 0.95 and scores["count"] == 72
    assert scores["color_direction"] >= scores["joint"] and scores["moving_object"] == 1.0


def test_detector_rejects_wrong_class_and_blank(decoded: tuple[torch.Tensor, list[str]]) -> None:
    videos, names = decoded
    flipped = torch.flip(videos, dims=[2])  # reversed time: every direction is wrong
    assert score_samples(flipped, names)["direction"] == 0.0
    blank = detect_shape(torch.zeros(3, 5, 32, 32))
    assert (blank.shape, blank.color, blank.direction) == (None, None, None)
    assert parse_class_name("a red circle moving left") == ("circle", "red", "left")
    with pytest.raises(ValueError, match="class name"):
        parse_class_name("circle red")


def test_make_shards_sidecars_and_labels(tmp_path: Path, shapes_shards: tuple[Path, dict]) -> None:
    folder, _ = shapes_shards
    source = tmp_path / "src"
    (source / "cats").mkdir(parents=True)
    sample = _samples(str(folder / "s-000000.tar"))[0]
    (source / "cats" / "one.mp4").write_bytes(sample["mp4"])
    (source / "cats" / "one.txt").write_text("a caption\n")
    (source / "two.png").write_bytes(_samples(str(folder / "s-000001.tar"))[-1]["png"])
    (source / "broken.webm").write_bytes(b"not a video")
    labels = tmp_path / "labels.csv"
    labels.write_text("file,label\ncats/one.mp4,cat\ntwo.png,dog\n")
    code = make_shards_main([str(source), str(tmp_path / "out" / "o-%06d.tar"),
                             "--labels", str(labels), "--max-samples", "1"])
    assert code == 0
    written = _samples(str(tmp_path / "out" / "o-{000000..000001}.tar"))
    by_key = {s["__key__"]: s for s in written}
    assert set(by_key) == {"cats_one", "two"}
    assert by_key["cats_one"]["txt"] == b"a caption" and by_key["cats_one"]["cls"] == b"0"
    meta = json.loads(by_key["cats_one"]["json"])
    assert meta["fps"] == 8.0 and meta["frames"] == 17 and meta["class_name"] == "cat"
    assert meta["source"] == "cats/one.mp4" and (meta["width"], meta["height"]) == (64, 64)
    assert by_key["two"]["cls"] == b"1" and "txt" not in by_key["two"]


def _clip(shape: str, color: str, direction: str, *, motion: str, seed: int, frames: int = 17,
          speed: tuple[float, float] = WRAP_SPEED) -> tuple[torch.Tensor, np.ndarray]:
    """A rendered ``(3, T, 32, 32)`` clip in [-1, 1] and its ``(T, 2)`` true centres."""
    cls = class_list([shape], [color], [direction])[0]
    frames_np, centres = render_clip(cls, frames=frames, size=32, object_size=10,
                                     rng=np.random.default_rng(seed), motion=motion, speed=speed)
    return torch.from_numpy(frames_np).permute(3, 0, 1, 2).float() / 127.5 - 1, centres


@pytest.mark.parametrize("motion", ["straight", "wrap"])
def test_detector_reads_every_shape_colour_and_direction(motion: str) -> None:
    # every shape x direction, the colours cycling through all six
    combos = [(s, d) for s in SHAPES for d in DIRECTIONS]
    colors = list(COLORS)
    clips, names = [], []
    for i, (shape, direction) in enumerate(combos):
        for j in range(2):
            color = colors[(2 * i + j) % len(colors)]
            clips.append(_clip(shape, color, direction, motion=motion, seed=10 * i + j)[0])
            names.append(f"{color} {shape} moving {direction}")
    scores = score_samples(torch.stack(clips), names)
    assert scores["joint"] == 1.0 and scores["moving_object"] == 1.0, scores


def test_wrap_motion_crosses_the_edge_and_keeps_its_direction() -> None:
    # 1.7-2 frame widths in 17 frames: every clip re-enters at the opposite edge
    for i, direction in enumerate(DIRECTIONS):
        clip, centres = _clip("triangle", "green", direction, motion="wrap", seed=i,
                              speed=(0.1, 0.12))
        along = centres[:, 0 if direction in ("left", "right") else 1]
        step = np.diff(along)
        assert (np.abs(step) > 16).sum() >= 1  # wrapped around at least once
        steady = step[np.abs(step) < 16]
        assert np.allclose(steady, steady[0])  # constant velocity
        found = detect_shape(clip)
        assert (found.shape, found.color, found.direction) == ("triangle", "green", direction)
        # halves of the clip are read alike: it can be extended without changing class
        assert detect_shape(clip[:, 8:]).direction == direction


def test_detector_measures_shape_away_from_the_border() -> None:
    # a square half out of the left edge reads as a narrow rectangle: not measured there
    clip, centres = _clip("square", "red", "left", motion="wrap", seed=3, frames=40)
    touching = (centres[:, 0] < 7) | (centres[:, 0] > 25)
    assert touching.any() and (~touching).any()
    assert detect_shape(clip).shape == "square"
    # every frame touching the border: measured on the frames rolled by half (the torus)
    cut = clip[:, touching]
    assert detect_shape(cut).shape == "square"


def test_motion_option_and_its_errors(tmp_path: Path) -> None:
    code = synthetic_main([str(tmp_path / "s-%06d.tar"), "--num-videos", "2", "--frames", "5",
                           "--size", "32", "--motion", "wrap", "--speed", "0.05,0.05"])
    assert code == 0
    meta = json.loads(_samples(str(tmp_path / "s-000000.tar"))[0]["json"])
    assert meta["motion"] == "wrap"
    steps = (np.diff(np.array(meta["trajectory"])[:, 0]) + 16) % 32 - 16  # on the torus
    assert meta["direction"] == "left" and np.allclose(steps, -1.6, atol=0.01)
    with pytest.raises(ValueError, match="motion"):
        write_synthetic(str(tmp_path / "x-%06d.tar"), motion="bounce")
    with pytest.raises(ValueError, match="speed"):
        write_synthetic(str(tmp_path / "y-%06d.tar"), motion="wrap", speed=(0.2, 0.1))
