"""``WebVideoDataModule``: video and image shards to batches of named streams.

Training yields ``{"video": stream_batch, "image": stream_batch}`` (the keys of the configured
sources) through a Lightning ``CombinedLoader`` in ``"max_size_cycle"`` mode: an epoch lasts as
long as the longest stream and shorter streams start over. Validation yields the same
dict-of-streams format, one stream per batch (all video batches, then all image batches), so
validation never repeats samples. See docs/data.md.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities.combined_loader import CombinedLoader
from torch.utils.data import DataLoader, IterableDataset

from data.decode import DEFAULT_MAX_PIXELS
from data.pipeline import (
    FAILURE_CHECK_AFTER,
    MAX_FAILURE_FRACTION,
    FailureGuard,
    StreamOptions,
    WebVideoStream,
    expand_urls,
)
from data.samples import Kind, SampleSpec
from data.transforms import as_size, check_zoom, check_zoom_choices

Urls = str | list[str] | None


# The tokenizer's compression (W.A.L.T Sec. 3.1): the causal VAE keeps the first frame and
# compresses each following group of TEMPORAL_FACTOR frames, and SPATIAL_FACTOR x SPATIAL_FACTOR
# pixels, into one latent position.
TEMPORAL_FACTOR = 4
SPATIAL_FACTOR = 8


def check_num_frames(num_frames: int) -> int:
    """``num_frames`` must be ``1 + 4k`` (the causal VAE keeps the first frame and compresses
    each following group of 4 frames into one latent frame, W.A.L.T Sec. 3.1)."""
    if not isinstance(num_frames, int) or num_frames < 1 or (num_frames - 1) % TEMPORAL_FACTOR:
        raise ValueError(
            f"num_frames must be 1 + 4k (1, 5, 9, 13, 17, ...), got {num_frames!r}; "
            "use num_frames_k=k to give k instead"
        )
    return num_frames


def check_size(size: int | tuple[int, int]) -> tuple[int, int]:
    """``(H, W)`` from ``size``; both must be multiples of 8 (the tokenizer's spatial factor,
    ``H = 8h``, W.A.L.T Sec. 3.1)."""
    pair = as_size(size)
    if any(side % SPATIAL_FACTOR for side in pair):
        raise ValueError(f"size must be divisible by 8 (H = 8h, W = 8w), got {size!r}")
    return pair


def latent_shape(num_frames: int, size: tuple[int, int]) -> tuple[int, int, int]:
    """Latent ``(t, h, w)`` of clips of ``num_frames`` frames at ``size`` (``(H, W)``)."""
    return (
        1 + (num_frames - 1) // TEMPORAL_FACTOR, size[0] // SPATIAL_FACTOR,
        size[1] // SPATIAL_FACTOR,
    )


def check_even_shards(num_shards: int, *, rank: int, world_size: int, name: str) -> None:
    """Under DDP without ``epoch_length``, every rank must get the same number of shards.

    Every rank computes the same answer from the same shard list, so all of them raise
    together here, at setup, instead of one rank running out of batches and the others dying
    in a collective ("Connection closed by peer").
    """
    if world_size <= 1 or num_shards % world_size == 0:
        return
    counts = [len(range(r, num_shards, world_size)) for r in range(world_size)]
    raise ValueError(
        f"{name}: {num_shards} shards cannot be dealt evenly to {world_size} ranks (this is "
        f"rank {rank} with {counts[rank]} shard(s); rank {counts.index(min(counts))} gets "
        f"{min(counts)}), so ranks would run different numbers of steps and DDP would stop; "
        "set epoch_length (optionally with resampled=True), or use a multiple of world_size shards"
    )


def _check_arguments(
    *,
    frame_stride: int | list[int] | None,
    target_fps: float | None,
    short_clip: str,
    max_failure_fraction: float,
    at_least_one: dict[str, int | None],
    at_least_zero: dict[str, int],
) -> None:
    """Constructor checks of ``WebVideoDataModule``; each message names its argument."""
    if frame_stride is not None and target_fps is not None:
        raise ValueError("set only one of frame_stride and target_fps, not both")
    strides = frame_stride if isinstance(frame_stride, (list, tuple)) else [frame_stride]
    if frame_stride is not None and (
        not strides or any(not isinstance(v, int) or v < 1 for v in strides)
    ):
        raise ValueError(f"frame_stride must be an int >= 1 or a list of them, got {frame_stride!r}")
    if target_fps is not None and not target_fps > 0:
        raise ValueError(f"target_fps must be > 0, got {target_fps!r}")
    if short_clip not in ("skip", "loop"):
        raise ValueError(f"short_clip must be 'skip' or 'loop', got {short_clip!r}")
    if not 0.0 <= max_failure_fraction <= 1.0:
        raise ValueError(f"max_failure_fraction must be in [0, 1], got {max_failure_fraction}")
    for name, value in at_least_one.items():
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    for name, value in at_least_zero.items():
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")


class EpochLoader(DataLoader):
    """A DataLoader that moves its stream to the next epoch each time it is iterated.

    Lightning iterates the training loader once per epoch (and ``max_size_cycle`` restarts a
    shorter stream within an epoch); each pass gets a fresh, seed-determined shuffle. The loader
    also keeps the bad-sample count of every pass of the run (from each batch's ``skipped``),
    so the failure guard sees the whole run, not one worker's pass.

    Args:
        dataset: a :class:`WebVideoStream` or :class:`NamedStreams`.
        require_batches: raise when a pass yields no batch (training streams).
        max_failure_fraction: see :class:`FailureGuard` (``None``: no run-wide guard).
        failure_check_after: see :class:`FailureGuard`.
        **kwargs: passed to ``DataLoader``.
    """

    def __init__(
        self,
        dataset: IterableDataset,
        *,
        require_batches: bool = False,
        max_failure_fraction: float | None = None,
        failure_check_after: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(dataset, batch_size=None, **kwargs)
        self.next_epoch = 0
        self.require_batches = require_batches
        self.guards: dict[str, FailureGuard] = {}
        self.passes = 0  # passes started in this run (next_epoch may start from a checkpoint)
        self.guard_options = (max_failure_fraction, failure_check_after)

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass use the shuffle of ``epoch``."""
        self.next_epoch = epoch

    def __iter__(self) -> Iterator[Any]:
        self.dataset.set_epoch(self.next_epoch)
        self.next_epoch += 1
        self.passes += 1
        if not self.require_batches and self.guard_options[0] is None:
            return super().__iter__()
        return self._checked(super().__iter__())

    def _guard(self, batch: dict[str, Any]) -> None:
        fraction, after = self.guard_options
        streams = {getattr(getattr(self.dataset, "spec", None), "kind", "?"): batch}
        if "skipped" not in batch:  # NamedStreams: {name: stream batch}
            streams = batch
        for name, stream in streams.items():
            guard = self.guards.setdefault(
                name, FailureGuard(max_failure_fraction=fraction, failure_check_after=after)
            )
            skipped = int(stream["skipped"].sum())
            guard.add(
                seen=len(stream["key"]) + skipped, failed=skipped,
                what=f"{name} stream over {self.passes} pass(es) of the run",
                last="see the BadSampleWarning messages",
            )

    def _checked(self, batches: Iterator[Any]) -> Iterator[Any]:
        # An empty training stream would silently end every epoch of the combined loader.
        count = 0
        for count, batch in enumerate(batches, start=1):  # noqa: B007 - count is read below
            if self.guard_options[0] is not None:
                self._guard(batch)
            yield batch
        if count == 0 and self.require_batches:
            urls = getattr(self.dataset, "urls", "?")
            kind = getattr(getattr(self.dataset, "spec", None), "kind", "?")
            raise RuntimeError(
                f"the {kind} training stream produced no batches from shards {urls}: the shards "
                "are empty, every sample was bad, or they hold only the other kind of media"
            )


class NamedStreams(IterableDataset):
    """Chains streams, wrapping each batch as ``{name: batch}`` (the validation loader).

    Args:
        streams: stream name to stream.
    """

    def __init__(self, *, streams: dict[str, WebVideoStream]) -> None:
        super().__init__()
        self.streams = streams

    def set_epoch(self, epoch: int) -> None:
        for stream in self.streams.values():
            stream.set_epoch(epoch)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for name, stream in self.streams.items():
            for batch in stream:
                yield {name: batch}


class WebVideoDataModule(pl.LightningDataModule):
    """Joint video + image data from webdataset shards (see docs/data.md for the shard format).

    Args:
        train_videos: training video shards: a path, a brace pattern
            (``data/train-{000000..000099}.tar``), a list, or ``pipe:``/URL shards.
        train_images: training image shards (may be the same mixed shards as ``train_videos``:
            each stream keeps the samples of its own kind, routed by file extension).
        val_videos: validation video shards.
        val_images: validation image shards.
        num_frames: frames per clip, ``1 + 4k`` (17 = 1 + 4*4 as in W.A.L.T).
        num_frames_k: alternative to ``num_frames``: ``k`` gives ``num_frames = 1 + 4k``.
        size: output ``H`` and ``W`` (an int for square). Frames are scaled to cover it, then
            cropped (randomly for training, centred for validation).
        zoom: training scale augmentation, a range ``[low, high]`` (``>= 1``): each training
            sample is scaled to cover ``z x size`` with ``z ~ U(low, high)`` before its random
            crop, so a model trained at ``size`` also sees content at up to ``high`` times the
            scale (a tokenizer trained on 32-pixel crops of 64-pixel frames reconstructs 64-pixel
            frames). Validation is never zoomed. ``None`` (default): no zoom.
        zoom_choices: training zoom drawn from a set instead of a range (exclusive with
            ``zoom``): ``[1, 2]`` trains a tokenizer on each scale of a 2x super-resolution
            cascade and none between, which keeps more of the base scale than the range
            ``[1, 2]`` (docs/super_resolution.md, "What limits the tiny stage").
        frame_stride: stride in source frames between clip frames (exclusive with
            ``target_fps``); both unset means stride 1. A list gives stride choices: each
            training clip draws one (validation uses the first), so clips come at several real
            frame rates, the batch's ``fps``, for fps conditioning (Make-A-Video).
        target_fps: wanted clip frame rate; the stride is ``round(source_fps / target_fps)``.
        short_clip: a video with fewer frames than the clip spans is skipped ("skip",
            counted as a bad sample) or wrapped around from its first frame ("loop").
        batch_size: video clips per batch.
        image_batch_size: images per batch (defaults to ``batch_size``).
        num_workers: dataloader worker processes per stream (so 2 streams use twice as many).
        seed: shuffle seed; the order is a function of (seed, epoch, rank, worker).
        shuffle_buffer: training sample-shuffle buffer per worker (shards are shuffled too);
            0 or 1 keeps the shard order within a shard.
        resampled: draw training shards with replacement forever (multi-node recipe); set
            ``epoch_length`` to give epochs a length.
        epoch_length: training samples per epoch over all ranks (rounded up to whole batches
            per rank, the same count on every rank so DDP steps stay in lockstep). Without it
            an epoch is one pass over the shards (``resampled=False``) or endless.
        max_failure_fraction: stop with an error when more than this fraction of the samples
            a worker has seen were bad (after ``failure_check_after`` samples).
        failure_check_after: samples a worker must see before the fraction is checked. The same
            check also runs over every pass of the run together (see docs/data.md).
        max_pixels: pixels per frame (width x height from the file header) above which a video
            or image is skipped, counted as a bad sample, before anything is decoded; ``None``
            disables the cap.
        load_pixels: decode media; False reads only precomputed ``latents`` (and text arrays).
            Latents whose ``(t, h, w)`` disagree with ``num_frames`` and ``size`` (for the 4x
            temporal, 8x spatial tokenizer) are reported once per reader
            (``LatentShapeWarning``); a latent whose shape differs from the reader's earlier
            ones is a bad sample.
        num_classes: the model's number of classes: a sample whose ``cls`` lies outside
            ``[-1, num_classes)`` is a bad sample, skipped and counted, instead of an error in
            the model (``None`` or ``0``, a model without labels: checked only to fit int64;
            ``train.py`` links it from the backbone).
        pin_memory: pin batches in page-locked memory (for GPU training).
        rank: override the rank used to split shards (default: the trainer's, else
            ``torch.distributed``'s, else 0).
        world_size: override the number of ranks (same defaults as ``rank``).
    """

    def __init__(
        self,
        *,
        train_videos: Urls = None,
        train_images: Urls = None,
        val_videos: Urls = None,
        val_images: Urls = None,
        num_frames: int = 17,
        num_frames_k: int | None = None,
        size: int | tuple[int, int] = 256,
        zoom: float | list[float] | None = None,
        zoom_choices: list[float] | None = None,
        frame_stride: int | list[int] | None = None,
        target_fps: float | None = None,
        short_clip: Literal["skip", "loop"] = "skip",
        batch_size: int = 8,
        image_batch_size: int | None = None,
        num_workers: int = 2,
        seed: int = 0,
        shuffle_buffer: int = 64,
        resampled: bool = False,
        epoch_length: int | None = None,
        max_failure_fraction: float = MAX_FAILURE_FRACTION,
        failure_check_after: int = FAILURE_CHECK_AFTER,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        load_pixels: bool = True,
        num_classes: int | None = None,
        pin_memory: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        super().__init__()
        if num_frames_k is not None:
            num_frames = 1 + 4 * num_frames_k
        self.num_frames = check_num_frames(num_frames)
        self.size = check_size(size)
        self.zoom = check_zoom(zoom)
        self.zoom_choices = check_zoom_choices(zoom_choices, zoom=zoom)
        _check_arguments(
            frame_stride=frame_stride, target_fps=target_fps, short_clip=short_clip,
            max_failure_fraction=max_failure_fraction,
            at_least_one={"batch_size": batch_size, "image_batch_size": image_batch_size,
                          "epoch_length": epoch_length, "max_pixels": max_pixels},
            at_least_zero={"num_workers": num_workers, "shuffle_buffer": shuffle_buffer,
                           "failure_check_after": failure_check_after,
                           "num_classes": num_classes or 0},
        )
        if train_videos is None and train_images is None and val_videos is None and val_images is None:
            raise ValueError("give at least one of train_videos, train_images, val_videos, val_images")
        self.sources = {
            "train": {"video": train_videos, "image": train_images},
            "val": {"video": val_videos, "image": val_images},
        }
        self.frame_stride, self.target_fps, self.short_clip = frame_stride, target_fps, short_clip
        self.batch_sizes = {"video": batch_size, "image": image_batch_size or batch_size}
        self.max_pixels = max_pixels
        self.num_workers, self.seed, self.shuffle_buffer = num_workers, seed, shuffle_buffer
        self.resampled, self.epoch_length = resampled, epoch_length
        self.max_failure_fraction, self.failure_check_after = max_failure_fraction, failure_check_after
        self.load_pixels, self.pin_memory = load_pixels, pin_memory
        self.num_classes = num_classes
        self.rank_override, self.world_size_override = rank, world_size
        self.streams: dict[str, dict[str, WebVideoStream]] = {"train": {}, "val": {}}
        self._train_loaders: dict[str, EpochLoader] = {}
        self._resume_passes: dict[str, int] = {}

    def setup(self, stage: str | None = None) -> None:
        """Expand and check every shard pattern (missing files fail here, before training)."""
        rank, world_size = self._rank_and_world_size()
        for split, kinds in self.sources.items():
            self.streams[split] = {
                kind: self._make_stream(split, kind, urls, rank, world_size)
                for kind, urls in kinds.items()
                if urls is not None
            }

    def train_dataloader(self) -> CombinedLoader:
        """``{"video": loader, "image": loader}`` (configured keys only), ``max_size_cycle``."""
        streams = self._require("train")
        self._train_loaders = {
            name: self._loader(stream, require_batches=True) for name, stream in streams.items()
        }
        for name, passes in self._resume_passes.items():
            if name in self._train_loaders:
                self._train_loaders[name].set_epoch(passes)
        return CombinedLoader(self._train_loaders, mode="max_size_cycle")

    def state_dict(self) -> dict[str, Any]:
        """Passes each training stream has started, saved in Lightning checkpoints.

        A resumed run continues the seed-determined shuffle sequence with the next pass instead
        of replaying pass 0 (a webdataset stream cannot restart mid-pass at the same sample).
        """
        passes = {name: loader.next_epoch for name, loader in self._train_loaders.items()}
        return {"train_passes": passes or dict(self._resume_passes)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume_passes = {k: int(v) for k, v in state_dict.get("train_passes", {}).items()}

    def val_dataloader(self) -> DataLoader | list:
        """Batches ``{"video": batch}`` then ``{"image": batch}``, each sample once.

        Without validation shards this is ``[]``, which Lightning treats as "no validation".
        """
        if all(urls is None for urls in self.sources["val"].values()):
            return []
        return self._loader(NamedStreams(streams=self._require("val")))

    def test_dataloader(self) -> DataLoader | list:
        """The validation shards (``train.py test``; there is no separate test split)."""
        return self.val_dataloader()

    def predict_dataloader(self) -> DataLoader | list:
        """The validation shards (``train.py predict`` generates for their labels/captions)."""
        return self.val_dataloader()

    def _require(self, split: str) -> dict[str, WebVideoStream]:
        if not self.streams[split]:
            if not any(v is not None for v in self.sources[split].values()):
                raise ValueError(f"no {split} shards configured ({split}_videos / {split}_images)")
            self.setup("fit")
        return self.streams[split]

    def _loader(self, dataset: IterableDataset, *, require_batches: bool = False) -> EpochLoader:
        return EpochLoader(
            dataset,
            require_batches=require_batches,
            max_failure_fraction=self.max_failure_fraction,
            failure_check_after=self.failure_check_after,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=False,
            prefetch_factor=2 if self.num_workers > 0 else None,
        )

    def _make_stream(
        self, split: str, kind: Kind, urls: Urls, rank: int, world_size: int
    ) -> WebVideoStream:
        train = split == "train"
        num_frames = self.num_frames if kind == "video" else 1
        spec = SampleSpec(
            kind=kind,
            num_frames=num_frames,
            size=self.size,
            frame_stride=(tuple(self.frame_stride) if isinstance(self.frame_stride, list)
                          else self.frame_stride),
            target_fps=self.target_fps,
            short_clip=self.short_clip,
            train=train,
            load_pixels=self.load_pixels,
            max_pixels=self.max_pixels,
            zoom=self.zoom if train else None,
            zoom_choices=self.zoom_choices if train else None,
            num_classes=self.num_classes,
            latent_shape=None if self.load_pixels else latent_shape(num_frames, self.size),
        )
        options = StreamOptions(
            batch_size=self.batch_sizes[kind],
            shuffle=train,
            seed=self.seed,
            shuffle_buffer=self.shuffle_buffer if train else 0,
            resampled=self.resampled and train,
            epoch_length=self.epoch_length if train else None,
            max_failure_fraction=self.max_failure_fraction,
            failure_check_after=self.failure_check_after,
            rank=rank,
            world_size=world_size,
        )
        expanded = expand_urls(urls, name=f"{split}_{kind}s")
        if train and not options.resampled and options.epoch_length is None:
            check_even_shards(len(expanded), rank=rank, world_size=world_size, name=f"{split}_{kind}s")
        return WebVideoStream(urls=expanded, spec=spec, options=options)

    def _rank_and_world_size(self) -> tuple[int, int]:
        rank, world_size = 0, 1
        trainer = getattr(self, "_trainer", None)
        if trainer is not None:
            rank, world_size = trainer.global_rank, trainer.world_size
        elif torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
        rank = self.rank_override if self.rank_override is not None else rank
        world_size = self.world_size_override if self.world_size_override is not None else world_size
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
        if world_size > 1 and self.resampled is False and self.epoch_length is None:
            warnings.warn(
                "training with several ranks and neither resampled=True nor epoch_length: "
                "ranks may get different batch counts, which stalls DDP; set epoch_length",
                stacklevel=2,
            )
        return rank, world_size
