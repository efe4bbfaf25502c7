"""Hostile and unusual inputs, all made here with PyAV and Pillow: every one either decodes to
the right values or is skipped and counted with a named reason, and good samples beside them
always come through. Covers image modes, giant header sizes, malformed sidecar members, key
collisions in the shard writer, and broken files under every media extension."""

from __future__ import annotations

import io
import json
import struct
import warnings
import zlib
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from data.datamodule import WebVideoDataModule
from data.decode import (
    ALPHA_BACKGROUND,
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    MediaTooLargeError,
    decode_clip,
    decode_image,
    probe_video,
)
from data.make_shards import KeyCollisionWarning, write_shards
from data.pipeline import BadSampleWarning

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
WHITE = np.array(ALPHA_BACKGROUND, dtype=np.float64)


def _save(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _video(frames: np.ndarray, *, pix_fmt: str = "yuv420p", fps: int = 8) -> bytes:
    """``(T, H, W, 3)`` uint8 frames as an H.264 MP4 in ``pix_fmt``."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = pix_fmt
        stream.options = {"crf": "0", "preset": "ultrafast", "threads": "1"}  # lossless
        for frame in frames:
            rgb = av.VideoFrame.from_ndarray(frame, format="rgb24")
            container.mux(stream.encode(rgb.reformat(format=pix_fmt, threads=1)))
        container.mux(stream.encode())
    return buffer.getvalue()


def _giant_png(width: int, height: int) -> bytes:
    """A 1x1 PNG whose IHDR (with a valid CRC) claims ``width x height``."""
    data = bytearray(_save(Image.new("RGB", (1, 1)), "png"))
    data[16:24] = struct.pack(">II", width, height)  # IHDR data starts after type at byte 16
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # CRC of type + data
    return bytes(data)


def _giant_gif(width: int, height: int) -> bytes:
    """A 2x2 GIF whose logical screen descriptor claims ``width x height``."""
    data = bytearray(_save(Image.new("P", (2, 2)), "gif"))
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


# ---------------------------------------------------------------- image modes


def _palette_image() -> tuple[Image.Image, np.ndarray]:
    image = Image.new("P", (3, 1))
    image.putpalette([200, 10, 10, 10, 200, 10, 10, 10, 200] + [0] * 759)
    image.putdata([0, 1, 2])
    return image, np.array([[[200, 10, 10], [10, 200, 10], [10, 10, 200]]], dtype=np.float64)


def _mode_cases() -> dict[str, tuple[bytes, np.ndarray]]:
    """mode -> (encoded file, expected (H, W, 3) RGB), expectations computed here."""
    sixteen = np.array([[0, 257, 1000, 32896, 65535]], dtype=np.uint16)
    grey16 = np.repeat(np.round(sixteen / 257.0)[..., None], 3, axis=-1)
    palette, palette_rgb = _palette_image()
    transparent = palette_rgb.copy()
    transparent[0, 1] = WHITE  # index 1 is the transparent entry
    rgba = np.array([[[255, 0, 0, 255], [0, 0, 255, 0], [0, 255, 0, 128]]], dtype=np.uint8)
    alpha = rgba[..., 3:] / 255.0
    la = np.array([[[40, 255], [40, 0], [200, 64]]], dtype=np.uint8)
    cmyk = np.array([[[0, 0, 0, 0], [100, 50, 20, 60], [255, 0, 0, 0]]], dtype=np.uint8)
    cmyk_rgb = (255 - cmyk[..., :3].astype(np.float64)) * (255 - cmyk[..., 3:]) / 255
    grey = np.array([[0, 77, 255]], dtype=np.uint8)
    bits = np.array([[True, False, True]])
    return {
        "I;16": (_save(Image.fromarray(sixteen), "png"), grey16),
        "I;16B": (_save(Image.frombytes("I;16B", (5, 1), sixteen.astype(">u2").tobytes()),
                        "tiff"), grey16),
        "I": (_save(Image.fromarray(sixteen.astype(np.int32)), "tiff"), grey16),
        "P": (_save(palette, "png"), palette_rgb),
        "P+transparency": (_save(palette, "png", transparency=1), transparent),
        "RGBA": (_save(Image.fromarray(rgba, "RGBA"), "png"),
                 rgba[..., :3] * alpha + WHITE * (1 - alpha)),
        "LA": (_save(Image.fromarray(la, "LA"), "png"),
               la[..., :1] * (la[..., 1:] / 255.0) + WHITE * (1 - la[..., 1:] / 255.0)),
        "CMYK": (_save(Image.fromarray(cmyk, "CMYK"), "tiff"), cmyk_rgb),
        "L": (_save(Image.fromarray(grey, "L"), "png"), np.repeat(grey[..., None], 3, -1)),
        "1": (_save(Image.fromarray(bits).convert("1"), "png"),
              np.repeat(bits[..., None] * 255.0, 3, -1)),
    }


@pytest.mark.parametrize("mode", list(_mode_cases()))
def test_every_image_mode_decodes_to_the_right_rgb(mode: str) -> None:
    data, expected = _mode_cases()[mode]
    decoded = decode_image(data)
    assert decoded.dtype == np.uint8 and decoded.shape == expected.shape
    np.testing.assert_allclose(decoded, expected, atol=1)  # rounding of the compositing only


def test_transparent_gif_video_is_composited_on_the_background() -> None:
    palette, palette_rgb = _palette_image()
    frames = [palette.copy() for _ in range(3)]
    data = _save(frames[0], "gif", save_all=True, append_images=frames[1:], transparency=1,
                 duration=125, loop=0, disposal=2)
    clip = decode_clip(data, num_frames=3, clip_start="start", short_clip="loop")
    expected = palette_rgb.copy()
    expected[0, 1] = WHITE
    for frame in clip.frames:
        np.testing.assert_array_equal(frame, expected.astype(np.uint8))


# ---------------------------------------------------------------- size bounds


def test_giant_headers_are_refused_before_decoding() -> None:
    with pytest.raises(MediaTooLargeError, match="9000x9000.*max_pixels"):
        decode_image(_giant_png(9000, 9000))
    for call in (probe_video, lambda data: decode_clip(data, num_frames=1)):
        with pytest.raises(MediaTooLargeError, match="12000x12000.*max_pixels"):
            call(_giant_gif(12000, 12000))
    mp4 = _video(np.zeros((1, 64, 96, 3), dtype=np.uint8))
    with pytest.raises(MediaTooLargeError, match="96x64"):
        decode_clip(mp4, num_frames=1, max_pixels=96 * 64 - 1)
    assert decode_clip(mp4, num_frames=1, max_pixels=96 * 64).frames.shape == (1, 64, 96, 3)
    assert DEFAULT_MAX_PIXELS >= 3840 * 2160  # 4K video stays under the default


def test_make_shards_reads_sizes_from_headers_and_skips_giants(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "giant.png").write_bytes(_giant_png(9000, 9000))
    (source / "giant.gif").write_bytes(_giant_gif(12000, 12000))
    (source / "good.png").write_bytes(_save(Image.new("RGB", (6, 4), (1, 2, 3)), "png"))
    summary = write_shards(source, str(tmp_path / "out" / "s-%06d.tar"), progress=False)
    assert summary["written"] == 1 and len(summary["failed"]) == 2
    assert all("max_pixels" in line for line in summary["failed"])
    (sample,) = wds.WebDataset(summary["paths"], shardshuffle=False)
    assert json.loads(sample["json"])["width"] == 6 and json.loads(sample["json"])["height"] == 4


# ---------------------------------------------------------------- shard writer keys


@pytest.mark.parametrize("names, keys", [
    (["clip.mp4", "clip.jpg"], {"clip", "clip_mp4"}),
    (["a.b.mp4", "a_b.mp4"], {"a_b", "a_b_mp4"}),
])
def test_colliding_keys_get_distinct_keys_and_a_warning(
    tmp_path: Path, names: list[str], keys: set[str]
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    video = _video(np.full((2, 8, 8, 3), 90, dtype=np.uint8))
    image = _save(Image.new("RGB", (8, 8), (9, 9, 9)), "jpeg")
    for name in names:
        (source / name).write_bytes(video if name.endswith("mp4") else image)
    with pytest.warns(KeyCollisionWarning, match="taken by an earlier file"):
        summary = write_shards(source, str(tmp_path / "out" / "s-%06d.tar"), progress=False)
    assert summary["written"] == 2 and summary["failed"] == [] and len(summary["renamed"]) == 1
    samples = list(wds.WebDataset(summary["paths"], shardshuffle=False))
    assert {s["__key__"] for s in samples} == keys
    assert sorted(json.loads(s["json"])["source"] for s in samples) == sorted(names)


# ---------------------------------------------------------------- malformed members


def _latents(seed: int) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.random.default_rng(seed).standard_normal((2, 1, 2, 2)).astype(np.float32))
    return buffer.getvalue()


def test_malformed_sidecars_are_counted_and_named(tmp_path: Path) -> None:
    good = {"__key__": "good", "latents.npy": _latents(0), "cls": "3", "txt": "ok",
            "json": json.dumps({"kind": "video", "fps": 8, "stride": 1})}
    bad = [
        {"__key__": "badjson", "latents.npy": _latents(1), "json": b"{not json"},
        {"__key__": "listjson", "latents.npy": _latents(2), "json": b"[1, 2]"},
        {"__key__": "badfps", "latents.npy": _latents(3), "json": b'{"fps": "fast"}'},
        {"__key__": "badcls", "latents.npy": _latents(4), "cls": b"three"},
        {"__key__": "badtxt", "latents.npy": _latents(5), "txt": b"\xff\xfe\xfa"},
    ]
    shard = tmp_path / "latents.tar"
    with wds.TarWriter(str(shard)) as sink:
        for sample in [bad[0], bad[1], good, *bad[2:]]:
            sink.write(sample)
    module = WebVideoDataModule(val_videos=str(shard), load_pixels=False, batch_size=8,
                                num_workers=0)
    module.setup("validate")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        batches = list(module.val_dataloader())
    messages = [str(w.message) for w in record if issubclass(w.category, BadSampleWarning)]
    assert [k for b in batches for k in b["video"]["key"]] == ["good"]
    assert batches[0]["video"]["label"].tolist() == [3]
    assert sum(int(b["video"]["skipped"]) for b in batches) == len(bad) == len(messages)
    for sample, reason in zip(bad, ["json", "json", "json", "cls", "txt"]):
        (message,) = [m for m in messages if f"'{sample['__key__']}'" in m]
        assert str(shard) in message and f"malformed {reason} member" in message


# ---------------------------------------------------------------- a shard of hostile media


def _hostile_samples() -> tuple[list[dict], dict[str, np.ndarray | None]]:
    """Samples, and key -> expected first frame (``None``: must be skipped)."""
    rng = np.random.default_rng(0)
    solid = np.full((1, 16, 16, 3), (30, 160, 220), dtype=np.uint8)
    good_png = _save(Image.fromarray(solid[0]), "png")
    samples, expected = [], {}

    def add(key: str, field: str, data: bytes, frame: np.ndarray | None) -> None:
        samples.append({"__key__": key, field: data})
        expected[key] = frame

    for ext in VIDEO_EXTENSIONS + IMAGE_EXTENSIONS:
        add(f"empty_{ext}", ext, b"", None)
        add(f"random_{ext}", ext, rng.integers(0, 256, 3000, dtype=np.uint8).tobytes(), None)
    add("good_png", "png", good_png, solid[0])
    add("cut_png", "png", good_png[: len(good_png) // 2], None)
    mp4 = _video(np.repeat(solid, 3, axis=0))
    add("good_mp4", "mp4", mp4, solid[0])
    add("cut_mp4", "mp4", mp4[: len(mp4) // 3], None)
    add("one_frame", "mp4", _video(solid), solid[0])
    add("two_by_two", "mp4", _video(np.full((2, 2, 2, 3), 200, dtype=np.uint8)),
        np.full((2, 2, 3), 200, dtype=np.uint8))
    add("yuv444", "mp4", _video(solid, pix_fmt="yuv444p"), solid[0])
    add("giant_png", "png", _giant_png(9000, 9000), None)
    add("giant_gif", "gif", _giant_gif(12000, 12000), None)
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)  # fully transparent: the background
    add("rgba", "png", _save(Image.fromarray(rgba, "RGBA"), "png"),
        np.broadcast_to(np.array(ALPHA_BACKGROUND, dtype=np.uint8), (4, 4, 3)))
    return samples, expected


def _ten_bit_or_skip() -> bytes:
    try:
        return _video(np.full((1, 16, 16, 3), 100, dtype=np.uint8), pix_fmt="yuv420p10le")
    except (av.error.FFmpegError, ValueError) as error:
        pytest.skip(f"the bundled libx264 cannot encode 10-bit video: {error}")


def test_hostile_shard_keeps_every_good_sample_and_counts_every_bad_one(tmp_path: Path) -> None:
    samples, expected = _hostile_samples()
    samples.append({"__key__": "ten_bit", "mp4": _ten_bit_or_skip()})
    expected["ten_bit"] = np.full((16, 16, 3), 100, dtype=np.uint8)
    if (REAL / "videos" / "decord_video_90_rotated.mov").is_file():
        data = (REAL / "videos" / "decord_video_90_rotated.mov").read_bytes()
        samples.append({"__key__": "rotated", "mov": data})
        first = decode_clip(data, num_frames=1, clip_start="start").frames[0]
        assert first.shape[0] > first.shape[1]  # stored landscape, shown portrait
        expected["rotated"] = first
    shard = tmp_path / "hostile.tar"
    with wds.TarWriter(str(shard)) as sink:
        for sample in samples:
            sink.write(sample)
    module = WebVideoDataModule(val_videos=str(shard), val_images=str(shard), num_frames=1,
                                size=8, batch_size=1, num_workers=0, short_clip="loop")
    module.setup("validate")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        batches = list(module.val_dataloader())
    messages = [str(w.message) for w in record if issubclass(w.category, BadSampleWarning)]
    got = {stream["key"][0]: stream for b in batches for stream in b.values()}
    assert set(got) == {key for key, frame in expected.items() if frame is not None}
    bad = [key for key, frame in expected.items() if frame is None]
    assert sum(int(s["skipped"]) for s in got.values()) == len(bad) == len(messages)
    for key in bad:
        assert any(f"'{key}' in shard {shard}" in m for m in messages), key
    for key in ("giant_png", "giant_gif"):
        assert any(f"'{key}'" in m and "max_pixels" in m for m in messages)
    for key, stream in got.items():
        frame = expected[key]
        # Resized to 8x8 with antialiasing: a flat frame keeps its colour (H.264 at crf 0 is
        # lossless in YUV; the RGB round trip costs a few levels).
        pixels = (stream["pixels"][0, :, 0] + 1) * 127.5  # (3, 8, 8)
        target = np.asarray(frame, dtype=np.float64).reshape(-1, 3).mean(axis=0)
        if key != "rotated":
            np.testing.assert_allclose(pixels.mean(dim=(1, 2)).numpy(), target, atol=4)
        assert stream["pixels"].shape == (1, 3, 1, 8, 8)


# ---------------------------------------------------------------- labels and latents


def _latent_module(shard: Path, **kwargs) -> WebVideoDataModule:
    module = WebVideoDataModule(val_videos=str(shard), load_pixels=False, batch_size=8,
                                num_workers=0, **kwargs)
    module.setup("validate")
    return module


def _read_all(module: WebVideoDataModule) -> tuple[list[dict], list[str], list]:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        batches = [b["video"] for b in module.val_dataloader()]
    bad = [str(w.message) for w in record if issubclass(w.category, BadSampleWarning)]
    return batches, bad, record


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize("cls, reason", [
    ("99999999999999999999999", "outside"),  # overflows int64 in the batch
    ("100", "outside"),  # out of range of num_classes=8: failed in the class embedding
    ("8", "outside"),
    ("-2", "outside"),
    ("three", "decimal integer"),  # a string
    ("1.5", "decimal integer"),  # a float
    ("True", "decimal integer"),  # a bool
    ("1_0", "decimal integer"),  # int() would read 10
    ("\u0663", "decimal integer"),  # an Arabic-Indic 3: int() would read 3
])
def test_a_bad_label_is_skipped_and_named(tmp_path: Path, cls: str, reason: str) -> None:
    shard = tmp_path / "labels.tar"
    with wds.TarWriter(str(shard)) as sink:
        sink.write({"__key__": "before", "latents.npy": _latents(0), "cls": "7"})
        sink.write({"__key__": "bad", "latents.npy": _latents(1), "cls": cls.encode()})
        sink.write({"__key__": "after", "latents.npy": _latents(2), "cls": "-1"})
    batches, bad, _ = _read_all(_latent_module(shard, num_classes=8, size=16, num_frames=5))
    assert [k for b in batches for k in b["key"]] == ["before", "after"]
    assert torch.cat([b["label"] for b in batches]).tolist() == [7, -1]
    assert sum(int(b["skipped"]) for b in batches) == 1
    (message,) = bad
    assert "'bad'" in message and str(shard) in message and reason in message


def test_num_classes_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        WebVideoDataModule(val_videos="x.tar", num_classes=-1)


def test_a_model_without_labels_keeps_labelled_samples(tmp_path: Path) -> None:
    """num_classes 0 (text or unconditional models, linked from the backbone) checks no range."""
    shard = tmp_path / "labels.tar"
    with wds.TarWriter(str(shard)) as sink:
        sink.write({"__key__": "a", "latents.npy": _latents(2), "cls": "5"})
    batches, bad, _ = _read_all(_latent_module(shard, num_classes=0, size=16, num_frames=5))
    assert [k for b in batches for k in b["key"]] == ["a"] and not bad


def test_a_latent_of_another_shape_or_dtype_is_skipped_and_named(tmp_path: Path) -> None:
    good = np.zeros((4, 2, 2, 2), dtype=np.float32)  # (c, t, h, w) of 5 frames at 16x16
    bad = {
        "wide": np.zeros((4, 2, 2, 3), dtype=np.float32),
        "channels": np.zeros((3, 2, 2, 2), dtype=np.float32),
        "flat": np.zeros((4, 2, 2), dtype=np.float32),
        "ints": np.zeros((4, 2, 2, 2), dtype=np.int32),
        "nan": np.full((4, 2, 2, 2), np.nan, dtype=np.float32),
    }
    shard = tmp_path / "latents.tar"
    with wds.TarWriter(str(shard)) as sink:
        sink.write({"__key__": "first", "latents.npy": _npy(good)})
        for key, array in bad.items():
            sink.write({"__key__": key, "latents.npy": _npy(array)})
        sink.write({"__key__": "half", "latents.npy": _npy(good.astype(np.float16))})
    batches, messages, _ = _read_all(_latent_module(shard, size=16, num_frames=5))
    (batch,) = batches
    assert batch["key"] == ["first", "half"] and batch["latents"].shape == (2, 4, 2, 2, 2)
    assert int(batch["skipped"]) == len(bad) == len(messages)
    for key in bad:
        (message,) = [m for m in messages if f"'{key}'" in m]
        assert str(shard) in message


def test_latents_that_disagree_with_num_frames_and_size_are_reported(tmp_path: Path) -> None:
    from data.pipeline import LatentShapeWarning

    shard = tmp_path / "latents.tar"
    with wds.TarWriter(str(shard)) as sink:
        for i in range(3):
            sink.write({"__key__": f"k{i}", "latents.npy": _npy(np.zeros((4, 3, 2, 2), np.float32))})
    _, _, record = _read_all(_latent_module(shard, size=32, num_frames=17))
    (message,) = [str(w.message) for w in record if issubclass(w.category, LatentShapeWarning)]
    assert "'k0'" in message and str(shard) in message
    assert "(3, 2, 2)" in message and "(5, 4, 4)" in message
    _, _, quiet = _read_all(_latent_module(shard, size=16, num_frames=9))  # t = 3, h = w = 2
    assert not [w for w in quiet if issubclass(w.category, LatentShapeWarning)]
