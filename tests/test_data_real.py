"""Every real file in ../shared/data/real goes through the shard writer and the datamodule, and
the frames match a direct full PyAV decode at the same timestamps."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from data.datamodule import WebVideoDataModule
from data.decode import decode_clip, probe_video
from data.make_shards import sample_key, write_shards
from data.transforms import frames_to_pixels

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
pytestmark = pytest.mark.skipif(
    not (REAL / "videos").is_dir(), reason=f"real media folder not found at {REAL}"
)
NUM_FRAMES, SIZE = 9, (40, 56)


def _direct_frames(data: bytes, times: tuple[float, ...]) -> np.ndarray:
    """Decode from the top, without seeking, and keep the frames shown at ``times``."""
    wanted = {round(t, 6) for t in times}
    found: dict[float, np.ndarray] = {}
    with av.open(io.BytesIO(data)) as container:
        for frame in container.decode(video=0):
            key = round(float(frame.time), 6)
            if key in wanted:
                rgb = frame.to_ndarray(format="rgb24")
                found[key] = np.rot90(rgb, k=(round(frame.rotation) // 90) % 4)
            if len(found) == len(wanted):
                break
    return np.stack([found[round(t, 6)] for t in times])


@pytest.fixture(scope="module")
def real_shards(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("real")
    summary = write_shards(REAL, str(out / "real-%06d.tar"), max_samples=5, progress=False)
    assert summary["failed"] == [] and summary["written"] == 15
    return str(out / f"real-{{000000..{summary['shards'] - 1:06d}}}.tar")


@pytest.fixture(scope="module")
def val_batches(real_shards: str) -> dict[str, dict]:
    module = WebVideoDataModule(
        val_videos=real_shards, val_images=real_shards, num_frames=NUM_FRAMES, size=SIZE,
        batch_size=4, num_workers=0, short_clip="loop",
    )
    module.setup("validate")
    by_key: dict[str, dict] = {}
    for batch in module.val_dataloader():
        ((kind, stream),) = batch.items()
        for i, key in enumerate(stream["key"]):
            by_key[key] = {"kind": kind, "pixels": stream["pixels"][i], "fps": stream["fps"][i],
                           "label": stream["label"][i], "caption": stream["caption"][i]}
    return by_key


@pytest.mark.parametrize("path", sorted((REAL / "videos").glob("*")), ids=lambda p: p.name)
def test_real_video_matches_direct_decode(path: Path, val_batches: dict[str, dict]) -> None:
    sample = val_batches[sample_key(path.relative_to(REAL).as_posix())]
    pixels = sample["pixels"]
    assert sample["kind"] == "video" and pixels.shape == (3, NUM_FRAMES, *SIZE)
    assert (pixels.shape[1] - 1) % 4 == 0 and pixels.dtype == torch.float32
    assert pixels.min() >= -1.0 and pixels.max() <= 1.0 and pixels.std() > 0.01
    assert sample["label"] == -1 and sample["caption"] == ""
    data = path.read_bytes()
    clip = decode_clip(data, num_frames=NUM_FRAMES, clip_start="center", short_clip="loop")
    assert sample["fps"] == pytest.approx(clip.fps)
    direct = _direct_frames(data, clip.times)
    assert np.abs(direct.astype(int) - clip.frames.astype(int)).max() <= 2
    expected = frames_to_pixels(direct, size=SIZE, crop="center")
    assert torch.allclose(pixels, expected, atol=2 / 127.5)
    if not clip.looped:  # frames are evenly spaced by the stride at the source rate
        steps = np.diff(clip.times) * clip.source_fps
        assert np.allclose(steps, clip.stride, atol=0.1)


def test_rotation_is_applied() -> None:
    info = probe_video((REAL / "videos" / "decord_video_90_rotated.mov").read_bytes())
    assert (info.width, info.height, info.rotation) == (320, 568, -90)
    clip = decode_clip(
        (REAL / "videos" / "decord_video_90_rotated.mov").read_bytes(), num_frames=5,
        short_clip="loop", clip_start="start",
    )
    assert clip.frames.shape == (5, 568, 320, 3) and clip.looped


@pytest.mark.parametrize("path", sorted((REAL / "images").glob("*")), ids=lambda p: p.name)
def test_real_image_matches_pillow(path: Path, val_batches: dict[str, dict]) -> None:
    sample = val_batches[sample_key(path.relative_to(REAL).as_posix())]
    assert sample["kind"] == "image" and sample["pixels"].shape == (3, 1, *SIZE)
    assert sample["fps"] == 0
    rgb = np.asarray(Image.open(path).convert("RGB"))[None]
    assert torch.allclose(sample["pixels"], frames_to_pixels(rgb, size=SIZE), atol=1e-5)


def test_real_training_batches(real_shards: str) -> None:
    module = WebVideoDataModule(
        train_videos=real_shards, train_images=real_shards, num_frames=5, size=32,
        frame_stride=2, batch_size=5, image_batch_size=5, num_workers=0, short_clip="skip",
        failure_check_after=1000,
    )
    module.setup("fit")
    seen, skipped = set(), 0
    with pytest.warns(UserWarning, match="decord_video_90_rotated"):  # 3 frames < 9 needed
        for batch, _, _ in module.train_dataloader():
            assert set(batch) == {"video", "image"}
            for kind, stream in batch.items():
                t = 5 if kind == "video" else 1
                assert stream["pixels"].shape[1:] == (3, t, 32, 32)
                assert stream["pixels"].abs().max() <= 1.0
                seen.update(stream["key"])
                skipped += int(stream["skipped"].sum()) if kind == "video" else 0
    assert len(seen) == 14 and skipped == 1
