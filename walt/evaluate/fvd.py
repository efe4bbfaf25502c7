"""Fréchet Video Distance (Unterthiner et al. 2018) with StyleGAN-V's protocol.

StyleGAN-V's ``fvd2048_16f`` (Skorokhodov et al. 2022), the protocol W.A.L.T reports:

* clips of 16 consecutive frames (``num_frames``) at the source frame rate (stride 1); videos
  shorter than that are skipped (``discard_short_videos``);
* reference clips start at a random frame (here drawn from ``seed``), generated clips at the
  first frame (``load_n_consecutive_random_offset=False`` for generated sets);
* frames go to the I3D as uint8 values at their stored resolution, and the network is called
  with ``rescale=True, resize=True, return_features=True`` (it maps values to [-1, 1] and
  resizes to 224 x 224 itself); see ``walt.evaluate.features``;
* the distance is the Fréchet distance between the two sets of features (2048 clips each in
  ``fvd2048_16f``; here ``max_items`` and ``draw_size``).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterator

import numpy as np
import torch
from tqdm import tqdm

from data.decode import ShortClipError
from walt.evaluate.features import I3DFeatures, extract_features
from walt.evaluate.inputs import count_media, iter_media, read_clip, readable_media, resize_frames

FVD_FRAMES = 16


def video_clips(
    source: str,
    *,
    num_frames: int,
    random_start: bool,
    seed: int,
    size: int | None,
    max_items: int | None,
    name: str,
) -> Iterator[tuple[str, np.ndarray]]:
    """``(key, (T, H, W, 3) uint8)`` clips of the videos of ``source`` (images are ignored).

    Args:
        source: a folder or shards.
        num_frames: consecutive frames per clip; shorter videos are skipped, and undecodable
            ones too, each named in a warning; past the loader's failure fraction the run
            stops (``walt.evaluate.inputs.readable_media``).
        random_start: start each clip at a random frame drawn from ``seed`` (else at frame 0).
        seed: seed of the clip starts.
        size: cover-resize and centre-crop to ``size x size`` first (``None``: keep the size).
        max_items: stop after this many clips.
        name: the argument name, for error messages and the progress bar.
    """
    rng = random.Random(seed)
    files = tqdm(iter_media(source, name=name), total=count_media(source), desc=name, unit="file")
    videos = (item for item in files if item.kind == "video")
    clips = readable_media(
        videos,
        functools.partial(read_clip, num_frames=num_frames, random_start=random_start, rng=rng),
        what=f"{name} {source}",
        skip_quietly=(ShortClipError,),
    )
    for done, (item, frames) in enumerate(clips, start=1):
        yield item.key, resize_frames(frames, size)
        if done == max_items:  # before the next file is read
            return


def fvd_features(
    source: str,
    i3d: I3DFeatures,
    *,
    num_frames: int = FVD_FRAMES,
    random_start: bool,
    seed: int = 0,
    size: int | None = None,
    max_items: int | None = None,
    batch_size: int = 8,
    name: str = "videos",
) -> tuple[list[str], torch.Tensor]:
    """Keys and ``(N, D)`` I3D features of the clips of ``source`` (see :func:`video_clips`)."""
    clips = video_clips(
        source,
        num_frames=num_frames,
        random_start=random_start,
        seed=seed,
        size=size,
        max_items=max_items,
        name=name,
    )
    keys, feats = extract_features(
        clips, i3d, batch_size=batch_size, pattern="b t h w c -> b c t h w"
    )
    if len(keys) < 2:
        raise ValueError(
            f"{name}: FVD needs at least 2 videos of >= {num_frames} frames, got {len(keys)}"
        )
    return keys, feats
