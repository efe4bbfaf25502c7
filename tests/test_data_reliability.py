"""Reliability of the data side: atomic shard writing, the run-wide failure guard, argument
checks, shard dealing across ranks and workers, encoder determinism, one extension list."""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

import data.make_shards as make_shards
import data.synthetic as synthetic
from data.datamodule import WebVideoDataModule, check_even_shards
from data.decode import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from data.encode import encode_video
from data.pipeline import BadSampleWarning, TooManyFailuresError, assign_shards
from data.shards import ShardSink


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="png")
    return buffer.getvalue()


def _shard(path: Path, samples: list[dict]) -> str:
    with wds.TarWriter(str(path)) as sink:
        for sample in samples:
            sink.write(sample)
    return str(path)


# ---------------------------------------------------------------- atomic shards


def test_interrupted_shard_sink_leaves_only_complete_shards(tmp_path: Path) -> None:
    pattern = str(tmp_path / "s-%06d.tar")
    with pytest.raises(OSError, match="disk full"), ShardSink(pattern, max_samples=2) as sink:
        for i in range(3):
            sink.write({"__key__": f"k{i}", "png": _png(i)})
        raise OSError("disk full")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s-000000.tar"]  # no temp, no partial
    assert [s["__key__"] for s in wds.WebDataset(sink.paths, shardshuffle=False)] == ["k0", "k1"]


def test_interrupted_make_shards_reports_and_leaves_no_partial_shard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for i in range(5):
        (source / f"img{i}.png").write_bytes(_png(i))
    real_build = make_shards.build_sample

    def build(path: Path, *args, **kwargs) -> dict:
        if path.name == "img3.png":
            raise KeyboardInterrupt
        return real_build(path, *args, **kwargs)

    monkeypatch.setattr(make_shards, "build_sample", build)
    out = tmp_path / "out"
    code = make_shards.main([str(source), str(out / "s-%06d.tar"), "--max-samples", "2"])
    assert code == 130
    assert sorted(p.name for p in out.iterdir()) == ["s-000000.tar"]
    captured = capsys.readouterr()
    assert "wrote 2 samples into 1 shard(s)" in captured.out and "interrupted" in captured.err


def test_interrupted_synthetic_writer_leaves_no_partial_shard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_make = synthetic.make_sample

    def make(index: int, *args, **kwargs) -> dict:
        if index == 3:
            raise OSError("No space left on device")
        return real_make(index, *args, **kwargs)

    monkeypatch.setattr(synthetic, "make_sample", make)
    with pytest.raises(OSError, match="No space"):
        synthetic.write_synthetic(str(tmp_path / "s-%06d.tar"), num_videos=5, frames=1,
                                  size=16, samples_per_shard=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s-000000.tar"]


# ---------------------------------------------------------------- failure guard


def test_failure_guard_counts_over_every_pass(tmp_path: Path) -> None:
    samples = [{"__key__": f"good{i}", "png": _png(i)} for i in range(3)]
    samples += [{"__key__": f"bad{i}", "png": b"not a png"} for i in range(3)]
    shard = _shard(tmp_path / "half.tar", samples)
    module = WebVideoDataModule(train_images=shard, size=8, batch_size=1, num_workers=0,
                                max_failure_fraction=0.3, failure_check_after=10)
    module.setup("fit")
    loader = module.train_dataloader()
    passes = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadSampleWarning)
        with pytest.raises(TooManyFailuresError, match="over 2 pass"):
            for passes in range(1, 5):  # noqa: B007 - read below
                for _ in loader:
                    pass
    assert passes == 2  # 6 samples per pass: only the run-wide count reaches 10


# ---------------------------------------------------------------- arguments


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": 0}, "batch_size must be >= 1"),
    ({"batch_size": -2}, "batch_size must be >= 1"),
    ({"image_batch_size": 0}, "image_batch_size must be >= 1"),
    ({"image_batch_size": -1}, "image_batch_size must be >= 1"),
    ({"frame_stride": 0}, "frame_stride must be"),
    ({"frame_stride": -3}, "frame_stride must be"),
    ({"target_fps": 0.0}, "target_fps must be > 0"),
    ({"target_fps": -8.0}, "target_fps must be > 0"),
    ({"size": 12}, "size must be divisible by 8"),
    ({"size": (16, 20)}, "size must be divisible by 8"),
    ({"epoch_length": 0}, "epoch_length must be >= 1"),
    ({"num_workers": -1}, "num_workers must be >= 0"),
    ({"shuffle_buffer": -1}, "shuffle_buffer must be >= 0"),
    ({"max_pixels": 0}, "max_pixels must be >= 1"),
])
def test_bad_arguments_fail_at_construction_naming_the_argument(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        WebVideoDataModule(train_videos="x.tar", **kwargs)


# ---------------------------------------------------------------- ranks and workers


@pytest.mark.parametrize("shards, world_size, num_workers", [(1, 2, 2), (3, 2, 2), (2, 1, 3), (5, 2, 2)])
def test_assign_shards_is_disjoint_and_covering(shards: int, world_size: int, num_workers: int) -> None:
    urls = [f"s{i}.tar" for i in range(shards)]
    per_shard = 7
    owner: dict[tuple[str, int], int] = {}
    for rank in range(world_size):
        for worker in range(num_workers):
            share = assign_shards(urls, rank=rank, world_size=world_size, worker=worker,
                                  num_workers=num_workers)
            index = 0
            for url in share.shards:
                for sample in range(per_shard):
                    if index % share.every == share.offset:
                        assert (url, sample) not in owner
                        owner[(url, sample)] = rank * num_workers + worker
                    index += 1
    assert len(owner) == shards * per_shard  # every sample has exactly one reader
    assert len(set(owner.values())) == world_size * num_workers  # nobody is left idle


def test_uneven_shards_under_ddp_need_epoch_length(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="3 shards cannot be dealt evenly to 2 ranks.*rank 1"):
        check_even_shards(3, rank=1, world_size=2, name="train_images")
    check_even_shards(4, rank=1, world_size=2, name="train_images")
    pattern = str(tmp_path / "s-{0..2}.tar")
    for i in range(3):
        _shard(tmp_path / f"s-{i}.tar", [{"__key__": f"s{i}k{j}", "png": _png(i * 9 + j)}
                                         for j in range(3)])
    uneven = WebVideoDataModule(train_images=pattern, size=8, num_workers=0, rank=0, world_size=2)
    with pytest.raises(ValueError, match="train_images: 3 shards cannot be dealt evenly"):
        uneven.setup("fit")
    counts, keys = [], []
    for rank in range(2):  # the documented fix: epoch_length gives every rank the same count
        module = WebVideoDataModule(train_images=pattern, size=8, batch_size=2, num_workers=0,
                                    rank=rank, world_size=2, epoch_length=8)
        module.setup("fit")
        batches = [batch["image"]["key"] for batch, _, _ in module.train_dataloader()]
        counts.append(len(batches))
        keys.append([len(batch) for batch in batches])
    # Rank 1 has one shard of 3 samples and cycles it (reshuffled each pass) to fill its quota.
    assert counts == [2, 2] and keys == [[2, 2], [2, 2]]


def test_a_rank_with_only_bad_samples_stops_with_its_rank_named(tmp_path: Path) -> None:
    _shard(tmp_path / "s-0.tar", [{"__key__": f"g{i}", "png": _png(i)} for i in range(2)])
    _shard(tmp_path / "s-1.tar", [{"__key__": f"b{i}", "png": b"broken"} for i in range(2)])
    module = WebVideoDataModule(train_images=str(tmp_path / "s-{0..1}.tar"), size=8, batch_size=1,
                                num_workers=0, rank=1, world_size=2, epoch_length=8,
                                shuffle_buffer=0, failure_check_after=1000)
    module.setup("fit")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadSampleWarning)
        with pytest.raises(TooManyFailuresError, match="rank 1 worker 0.*no usable sample"):
            list(module.train_dataloader())


# ---------------------------------------------------------------- determinism, extensions


def test_encoding_the_same_frames_gives_the_same_bytes() -> None:
    frames = np.random.default_rng(0).integers(0, 255, (5, 32, 48, 3), dtype=np.uint8)
    digests = {hashlib.sha256(encode_video(frames, fps=8)).hexdigest() for _ in range(30)}
    assert len(digests) == 1


def test_one_extension_list_for_shards_and_folders(tmp_path: Path) -> None:
    from tokenizer import clips

    assert clips.VIDEO_EXTENSIONS is VIDEO_EXTENSIONS and clips.IMAGE_EXTENSIONS is IMAGE_EXTENSIONS
    Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp_path / "a.bmp")
    assert [p.name for p in make_shards.media_files(tmp_path)] == ["a.bmp"]
    ((name, pixels),) = list(clips.folder_clips(tmp_path, num_frames=1, size=8, images=True))
    assert name == "a.bmp" and pixels.shape == (1, 3, 1, 8, 8)
