"""Reading folders and shards of media, keyed so that folders and shards pair up."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image

from data.decode import ShortClipError
from data.make_shards import write_shards
from tests.evaluate_fixtures import moving_video, write_videos
from walt.evaluate.inputs import count_media, iter_media, read_clip, read_frames, resize_frames


def test_folder_and_its_shards_give_the_same_keys_and_frames(tmp_path):
    folder = write_videos(tmp_path / "videos", count=2, frames=5, level=100)
    (folder / "sub").mkdir()
    Image.fromarray(np.full((8, 6, 3), 200, np.uint8)).save(folder / "sub" / "pic.png")
    write_shards(folder, str(tmp_path / "shards" / "s-%06d.tar"), progress=False)

    from_folder = list(iter_media(folder))
    from_shards = list(iter_media(str(tmp_path / "shards" / "s-000000.tar")))
    assert [i.key for i in from_folder] == ["sub_pic", "v0", "v1"]
    assert sorted(i.key for i in from_shards) == ["sub_pic", "v0", "v1"]
    assert [i.kind for i in from_folder] == ["image", "video", "video"]
    assert (
        count_media(folder) == 3 and count_media(str(tmp_path / "shards" / "s-000000.tar")) is None
    )
    by_key = {i.key: i for i in from_shards}
    for item in from_folder:
        np.testing.assert_array_equal(read_frames(item), read_frames(by_key[item.key]))
    assert read_frames(from_folder[0]).shape == (1, 8, 6, 3)


def test_read_frames_clip_and_resize(tmp_path):
    folder = write_videos(tmp_path, count=1, frames=7, level=120)
    (item,) = iter_media(folder)
    frames = read_frames(item)
    assert frames.shape == (7, 16, 16, 3) and frames.dtype == np.uint8
    # mp4 is lossy; the decoded frames stay close to the written ones.
    assert np.abs(frames.astype(int) - moving_video(frames=7, level=120, seed=0)).mean() < 4
    assert read_frames(item, max_frames=3).shape[0] == 3
    clip = read_clip(item, num_frames=4, random_start=False, rng=random.Random(0))
    np.testing.assert_array_equal(clip, frames[:4])
    with pytest.raises(ShortClipError):
        read_clip(item, num_frames=8, random_start=True, rng=random.Random(0))
    assert resize_frames(frames, 8).shape == (7, 8, 8, 3)
    assert resize_frames(frames, None) is frames


def test_missing_shards_and_empty_folders_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="reference: shard file"):
        list(iter_media(str(tmp_path / "none-000000.tar"), name="reference"))
    with pytest.raises(ValueError, match="generated: no videos or images in the folder"):
        list(iter_media(tmp_path, name="generated"))


def test_a_gif_preview_beside_its_video_is_read_once(tmp_path):
    """walt.generate writes sample_000.mp4 and its sample_000.gif preview: one key, read from
    the mp4 (a palette GIF is lossy and merges repeated frames)."""
    folder = write_videos(tmp_path / "run", count=2, frames=5, level=100)
    frames = moving_video(frames=5, level=100, seed=0)
    images = [Image.fromarray(f) for f in frames]
    images[0].save(folder / "v0.gif", save_all=True, append_images=images[1:], duration=125)
    images[0].save(folder / "only.gif", save_all=True, append_images=images[1:], duration=125)
    items = list(iter_media(folder))
    assert [i.key for i in items] == ["only", "v0", "v1"] and count_media(folder) == 3
    assert items[1].data == (folder / "v0.mp4").read_bytes()
