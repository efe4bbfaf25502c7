"""Shard streams: bad samples, failure stop, rank/worker splitting, seeded order, routing,
precomputed latents, epoch length and configuration errors."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from data.callbacks import count_skipped
from data.datamodule import WebVideoDataModule
from data.encode import encode_video
from data.pipeline import BadSampleWarning, TooManyFailuresError, expand_urls, split_shards


def _mp4(seed: int, frames: int = 5) -> bytes:
    rng = np.random.default_rng(seed)
    return encode_video(rng.integers(0, 255, (frames, 16, 16, 3), dtype=np.uint8), fps=8)


def _png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (12, 20, 3), dtype=np.uint8)).save(buffer, format="png")
    return buffer.getvalue()


def _write(path: Path, samples: list[dict]) -> str:
    with wds.TarWriter(str(path)) as sink:
        for sample in samples:
            sink.write(sample)
    return str(path)


def _image_shards(folder: Path, shards: int, per_shard: int) -> str:
    for s in range(shards):
        _write(folder / f"img-{s:02d}.tar", [
            {"__key__": f"s{s}i{i}", "png": _png(s * 100 + i), "cls": str(i)} for i in range(per_shard)
        ])
    return str(folder / f"img-{{00..{shards - 1:02d}}}.tar")


def _train_keys(module: WebVideoDataModule, kind: str = "image") -> list[str]:
    module.setup("fit")
    return [key for batch, _, _ in module.train_dataloader() for key in batch[kind]["key"]]


def test_bad_samples_are_skipped_counted_and_named(tmp_path: Path) -> None:
    good = [{"__key__": f"good{i}", "mp4": _mp4(i), "txt": f"clip {i}", "cls": str(i)} for i in range(3)]
    bad = [
        {"__key__": "truncated", "mp4": _mp4(9)[:400]},
        {"__key__": "notmedia", "txt": "a caption with no media"},
        {"__key__": "brokenpng", "png": b"\x89PNG not really"},
    ]
    image = {"__key__": "image", "png": _png(0)}
    samples = [good[0], bad[0], good[1], bad[1], bad[2], image, good[2]]
    shard = _write(tmp_path / "mixed.tar", samples)
    module = WebVideoDataModule(
        train_videos=shard, train_images=shard, num_frames=5, size=16, batch_size=3,
        num_workers=0, shuffle_buffer=0, failure_check_after=1000,
    )
    module.setup("fit")
    keys, skipped, labels = {"video": [], "image": []}, 0, []
    with pytest.warns(BadSampleWarning) as record:
        for batch, _, _ in module.train_dataloader():
            skipped += count_skipped(batch)
            for kind, stream in batch.items():
                keys[kind] += stream["key"]
                labels += stream["label"].tolist() if kind == "video" else []
    assert sorted(keys["video"]) == ["good0", "good1", "good2"] and sorted(labels) == [0, 1, 2]
    assert keys["image"] == ["image"]
    messages = [str(w.message) for w in record]
    for key in ("truncated", "notmedia", "brokenpng"):
        assert sum(f"'{key}'" in m and "mixed.tar" in m for m in messages) >= 1
    # Both streams read the shard; each counts what it could not use: the truncated mp4 and the
    # media-less sample in the video stream, the broken png and the media-less one in the image.
    assert skipped == 4


def test_empty_training_stream_is_an_error(tmp_path: Path) -> None:
    shard = _write(tmp_path / "videos.tar", [{"__key__": "v", "mp4": _mp4(0)}])
    module = WebVideoDataModule(train_images=shard, size=8, num_workers=0)
    with pytest.raises(RuntimeError, match="image training stream produced no batches"):
        _train_keys(module)


def test_endless_stream_over_empty_shards_is_an_error(tmp_path: Path) -> None:
    shard = _write(tmp_path / "empty.tar", [])
    module = WebVideoDataModule(train_images=shard, size=8, num_workers=0, epoch_length=4)
    with pytest.raises(ValueError, match="hold no samples"):
        _train_keys(module)


def test_failure_fraction_stops_with_clear_error(tmp_path: Path) -> None:
    samples = [{"__key__": f"bad{i}", "mp4": b"garbage"} for i in range(8)]
    shard = _write(tmp_path / "bad.tar", samples + [{"__key__": "ok", "mp4": _mp4(0)}])
    module = WebVideoDataModule(
        train_videos=shard, num_frames=5, size=16, batch_size=2, num_workers=0,
        max_failure_fraction=0.5, failure_check_after=4,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadSampleWarning)
        with pytest.raises(TooManyFailuresError, match="max_failure_fraction=0.5"):
            _train_keys(module, "video")


@pytest.mark.parametrize("resampled", [False, True])
def test_ranks_and_workers_split_disjoint_and_covering(tmp_path: Path, resampled: bool) -> None:
    pattern = _image_shards(tmp_path, shards=8, per_shard=3)
    per_rank = []
    for rank in range(2):
        module = WebVideoDataModule(
            train_images=pattern, size=8, batch_size=2, num_workers=2, rank=rank, world_size=2,
            resampled=resampled, epoch_length=12 if resampled else None, seed=3,
        )
        keys = _train_keys(module)
        per_rank.append(keys)
        assert len(keys) == len(set(keys)) or resampled
    if resampled:  # each rank draws its own batches: equal counts, not a partition
        assert len(per_rank[0]) == len(per_rank[1]) == 6
        return
    assert set(per_rank[0]).isdisjoint(per_rank[1])
    assert len(per_rank[0]) + len(per_rank[1]) == 24


def test_split_shards_partitions() -> None:
    urls = [f"u{i}" for i in range(10)]
    parts = [split_shards(urls, rank=r, world_size=2, worker=w, num_workers=2) for r in range(2)
             for w in range(2)]
    assert sorted(sum(parts, [])) == sorted(urls)
    assert all(set(a).isdisjoint(b) for i, a in enumerate(parts) for b in parts[i + 1 :])


def test_same_seed_same_order_different_seed_different_order(tmp_path: Path) -> None:
    pattern = _image_shards(tmp_path, shards=4, per_shard=6)

    def order(seed: int) -> list[str]:
        module = WebVideoDataModule(
            train_images=pattern, size=8, batch_size=4, num_workers=0, seed=seed, shuffle_buffer=8
        )
        return _train_keys(module)

    first = order(1)
    assert first == order(1) and sorted(first) == sorted(order(2))
    assert first != order(2) and len(first) == 24


def test_next_epoch_reshuffles(tmp_path: Path) -> None:
    pattern = _image_shards(tmp_path, shards=4, per_shard=6)
    module = WebVideoDataModule(train_images=pattern, size=8, batch_size=4, num_workers=0)
    module.setup("fit")
    loader = module.train_dataloader()
    epochs = [[k for batch, _, _ in loader for k in batch["image"]["key"]] for _ in range(2)]
    assert sorted(epochs[0]) == sorted(epochs[1]) and epochs[0] != epochs[1]


def test_mixed_shards_route_by_extension(tmp_path: Path) -> None:
    samples = [{"__key__": f"v{i}", "mp4": _mp4(i)} for i in range(3)]
    samples += [{"__key__": f"i{i}", "jpg": _png(i)} for i in range(4)]
    shard = _write(tmp_path / "mix.tar", samples)
    module = WebVideoDataModule(val_videos=shard, val_images=shard, num_frames=1, size=8,
                                batch_size=8, num_workers=0)
    module.setup("validate")
    batches = list(module.val_dataloader())
    assert [list(b) for b in batches] == [["video"], ["image"]]
    assert sorted(batches[0]["video"]["key"]) == ["v0", "v1", "v2"]
    assert batches[1]["image"]["pixels"].shape == (4, 3, 1, 8, 8)
    assert int(batches[0]["video"]["skipped"]) == 0


def test_precomputed_latents_without_pixels(tmp_path: Path) -> None:
    def npy(array: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        np.save(buffer, array)
        return buffer.getvalue()

    samples = [{
        "__key__": f"lat{i}", "latents.npy": npy(np.full((8, 3, 2, 2), i, np.float16)),
        "text_emb.npy": npy(np.zeros((5, 6), np.float32)), "text_mask.npy": npy(np.ones(5, bool)),
        "json": b'{"kind": "video", "fps": 12.5, "stride": 2}', "cls": b"4",
    } for i in range(3)]
    shard = _write(tmp_path / "lat.tar", samples)
    module = WebVideoDataModule(val_videos=shard, load_pixels=False, batch_size=3, num_workers=0)
    module.setup("validate")
    (batch,) = list(module.val_dataloader())
    stream = batch["video"]
    assert "pixels" not in stream and stream["latents"].shape == (3, 8, 3, 2, 2)
    assert stream["latents"].dtype == torch.float32 and stream["latents"][2].eq(2).all()
    assert stream["text_emb"].shape == (3, 5, 6) and stream["text_mask"].dtype == torch.bool
    assert stream["fps"].tolist() == [12.5] * 3 and stream["stride"].tolist() == [2] * 3
    assert stream["meta"][0] == {"kind": "video", "fps": 12.5, "stride": 2}


def test_epoch_length_gives_equal_batches(tmp_path: Path) -> None:
    pattern = _image_shards(tmp_path, shards=2, per_shard=3)
    module = WebVideoDataModule(train_images=pattern, size=8, batch_size=2, num_workers=0,
                                epoch_length=10)
    module.setup("fit")
    loader = module.train_dataloader()
    batches = [batch for batch, _, _ in loader]
    assert len(batches) == len(loader.iterables["image"]) == 5  # cycles the 6 samples


@pytest.mark.parametrize("short_clip, expected", [("skip", 0), ("loop", 1)])
def test_short_clips(tmp_path: Path, short_clip: str, expected: int) -> None:
    shard = _write(tmp_path / "short.tar", [{"__key__": "short", "mp4": _mp4(0, frames=3)}])
    module = WebVideoDataModule(val_videos=shard, num_frames=5, size=8, batch_size=1,
                                num_workers=0, short_clip=short_clip)
    module.setup("validate")
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        batches = list(module.val_dataloader())
    assert len(batches) == expected
    if expected:
        assert batches[0]["video"]["pixels"].shape == (1, 3, 5, 8, 8)


def test_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        WebVideoDataModule(train_videos="x.tar", num_frames=16)
    assert WebVideoDataModule(train_videos="x.tar", num_frames_k=2).num_frames == 9
    with pytest.raises(ValueError, match="only one of"):
        WebVideoDataModule(train_videos="x.tar", frame_stride=2, target_fps=8.0)
    missing = WebVideoDataModule(train_videos=str(tmp_path / "nope-{0..1}.tar"))
    with pytest.raises(FileNotFoundError, match="nope-0.tar"):
        missing.setup("fit")
    with pytest.raises(ValueError, match="expands to no shards"):
        expand_urls([], name="train_videos")
    with pytest.raises(ValueError, match="at least one"):
        WebVideoDataModule()
    assert expand_urls("pipe:cat a-{0..2}.tar", name="x")[2] == "pipe:cat a-2.tar"


def test_pipe_urls_are_read(tmp_path: Path) -> None:
    pattern = _image_shards(tmp_path, shards=2, per_shard=2)
    module = WebVideoDataModule(val_images=f"pipe:cat {pattern}", size=8, num_workers=0)
    module.setup("validate")
    keys = [k for batch in module.val_dataloader() for k in batch["image"]["key"]]
    assert sorted(keys) == ["s0i0", "s0i1", "s1i0", "s1i1"]


def test_constructible_from_cli_yaml() -> None:
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(WebVideoDataModule, "data")
    config = parser.parse_string(
        "data:\n  train_videos: [a.tar, '/x/b-{0..1}.tar']\n  size: [32, 48]\n"
        "  num_frames: 9\n  target_fps: 8\n  short_clip: loop\n"
    )
    module = parser.instantiate(config).data
    assert module.size == (32, 48) and module.num_frames == 9 and module.target_fps == 8.0
    assert module.sources["train"]["video"] == ["a.tar", "/x/b-{0..1}.tar"]


def test_truncated_shard_file_is_counted_not_fatal(tmp_path: Path) -> None:
    path = Path(_write(tmp_path / "cut.tar", [
        {"__key__": f"k{i}", "png": _png(i)} for i in range(6)
    ]))
    path.write_bytes(path.read_bytes()[:4000])  # inside the third member (members are 1.5 kB)
    module = WebVideoDataModule(val_images=str(path), size=8, batch_size=2, num_workers=0)
    module.setup("validate")
    with pytest.warns(BadSampleWarning, match="cut.tar"):
        batches = list(module.val_dataloader())
    keys = [k for b in batches for k in b["image"]["key"]]
    assert 1 <= len(keys) < 6 and sum(count_skipped(b) for b in batches) >= 1


def test_resumed_datamodule_continues_the_shuffle_sequence(tmp_path: Path) -> None:
    pattern = _image_shards(tmp_path, shards=4, per_shard=6)

    def fresh() -> WebVideoDataModule:
        module = WebVideoDataModule(train_images=pattern, size=8, batch_size=4, num_workers=0)
        module.setup("fit")
        return module

    def one_pass(loader) -> list[str]:
        return [k for batch, _, _ in loader for k in batch["image"]["key"]]

    straight = fresh()
    loader = straight.train_dataloader()
    passes = [one_pass(loader) for _ in range(3)]
    first = fresh()
    loader = first.train_dataloader()
    one_pass(loader), one_pass(loader)
    state = first.state_dict()
    assert state == {"train_passes": {"image": 2}}
    resumed = fresh()
    resumed.load_state_dict(state)
    assert one_pass(resumed.train_dataloader()) == passes[2] != passes[0]


def test_frame_stride_choices_give_clips_at_several_real_rates(tmp_path: Path) -> None:
    from data.synthetic import write_synthetic

    write_synthetic(str(tmp_path / "s-%06d.tar"), num_videos=16, frames=17, size=16, fps=8.0,
                    samples_per_shard=100)
    module = WebVideoDataModule(
        train_videos=str(tmp_path / "s-000000.tar"), val_videos=str(tmp_path / "s-000000.tar"),
        num_frames=5, size=16, batch_size=16, num_workers=0, shuffle_buffer=0,
        frame_stride=[1, 2], seed=0,
    )
    module.setup("fit")
    train = next(iter(module.train_dataloader()))[0]["video"]
    assert set(train["fps"].tolist()) == {8.0, 4.0}  # source fps / drawn stride
    torch.testing.assert_close(train["fps"], 8.0 / train["stride"].float())
    val = next(iter(module.val_dataloader()))
    val = (val[0] if isinstance(val, tuple) else val)["video"]
    assert set(val["stride"].tolist()) == {1}  # validation takes the first choice
    with pytest.raises(ValueError, match="frame_stride"):
        WebVideoDataModule(train_videos="x.tar", frame_stride=[1, 0])
