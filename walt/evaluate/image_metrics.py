"""FID (Heusel et al. 2017) and Inception Score (Salimans et al. 2016) of images or video frames.

Every image of a source is one sample; every video contributes its first ``num_frames`` frames
as separate samples (frame FID / frame IS). Images go to the Inception network as uint8 at their
stored size (``size`` cover-resizes and centre-crops them first); the network resizes them to
its own input size (299 x 299 for ``inception-2015-12-05.pt``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np
import torch
from tqdm import tqdm

from walt.evaluate.draws import draw_indices, summarize
from walt.evaluate.features import extract_features
from walt.evaluate.frechet import inception_score
from walt.evaluate.inputs import (
    count_media,
    iter_media,
    read_frames,
    readable_media,
    resize_frames,
)


def image_samples(
    source: str, *, num_frames: int, size: int | None, max_items: int | None, name: str
) -> Iterator[tuple[str, np.ndarray]]:
    """``(key, (H, W, 3) uint8)`` for every image and for the first frames of every video.

    Args:
        source: a folder or shards.
        num_frames: frames taken from the start of each video (all of a shorter one).
        size: cover-resize and centre-crop to ``size x size`` (``None``: keep the size).
        max_items: stop after this many usable files / samples of ``source`` (undecodable
            ones are skipped, each named in a warning; past the loader's failure fraction the
            run stops: ``walt.evaluate.inputs.readable_media``).
        name: the argument name, for error messages and the progress bar.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    files = tqdm(iter_media(source, name=name), total=count_media(source), desc=name, unit="file")
    readable = readable_media(
        files, functools.partial(read_frames, max_frames=num_frames), what=f"{name} {source}"
    )
    for done, (item, frames) in enumerate(readable, start=1):
        for t, frame in enumerate(resize_frames(frames, size)):  # (H, W, 3) of (T, H, W, 3)
            yield (item.key if item.kind == "image" else f"{item.key}#{t}"), frame
        if done == max_items:  # before the next file is read
            return


def image_features(
    source: str,
    network,
    *,
    num_frames: int = 16,
    size: int | None = None,
    max_items: int | None = None,
    batch_size: int = 32,
    name: str = "images",
) -> tuple[list[str], torch.Tensor]:
    """Keys and ``(N, D)`` rows of ``network`` (``InceptionFeatures.features`` or ``.logits``)."""
    samples = image_samples(
        source, num_frames=num_frames, size=size, max_items=max_items, name=name
    )
    keys, rows = extract_features(
        samples, network, batch_size=batch_size, pattern="b h w c -> b c h w"
    )
    if len(keys) < 2:
        raise ValueError(f"{name}: needs at least 2 images or frames, got {len(keys)}")
    return keys, rows


def inception_score_draws(
    logits: torch.Tensor, *, draw_size: int | None, num_draws: int, seed: int
) -> dict:
    """Inception Score over random draws of the samples (mean ± std over draws)."""
    generator = torch.Generator().manual_seed(seed)
    draws = draw_indices(
        len(logits), draw_size=draw_size, num_draws=num_draws, generator=generator, name="samples"
    )
    return summarize([inception_score(logits[idx]) for idx in draws])
