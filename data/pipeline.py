"""The webdataset stream: shard lists, rank/worker splitting, shuffling, decoding, batching.

One :class:`WebVideoStream` is one named stream of the batch ("video" or "image"). Batching
happens inside the dataloader worker so that each batch can carry how many samples that
worker skipped since its previous batch (``skipped``).

Splitting: shards are dealt to ranks (``shards[rank::world_size]``) and then to dataloader
workers, so with ``resampled=False`` every sample is seen exactly once per epoch across the
whole job. Where there are fewer shards than readers at a level, the readers of that level all
read the same shards and deal the samples instead (sample ``i`` to reader ``i % readers``), so
no rank or worker is left without data. With ``resampled=True`` every worker draws shards with
replacement from the full list forever (the usual multi-node recipe), and ``epoch_length`` cuts
the stream into epochs.
"""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import braceexpand
from torch.utils.data import IterableDataset, get_worker_info
from webdataset.tariterators import tarfile_samples

from data.samples import ArrayShapes, SampleSpec, collate, decode_sample, route

_ROUTED_WITHOUT_MATCH = 1000  # routed-away samples in a row before an all-wrong-kind error
# Defaults of the failure guard (the loader's, and the folder tools' through skip_unreadable).
MAX_FAILURE_FRACTION = 0.1
FAILURE_CHECK_AFTER = 100


class BadSampleWarning(UserWarning):
    """A sample (or shard) could not be used and was skipped."""


class LatentShapeWarning(UserWarning):
    """Precomputed latents disagree with the data module's ``num_frames`` / ``size``."""


class TooManyFailuresError(RuntimeError):
    """More than ``max_failure_fraction`` of the samples seen so far were bad."""


def expand_urls(urls: str | Sequence[str], *, name: str) -> list[str]:
    """Expand brace patterns in one or more shard URLs and check local files exist.

    Args:
        urls: a URL, a brace pattern (``shard-{000000..000009}.tar``) or a list of them.
            Local paths are checked; ``pipe:`` and ``scheme://`` URLs are passed as they are.
        name: the argument name, for error messages.
    """
    items = [urls] if isinstance(urls, str) else list(urls)
    expanded = [url for item in items for url in braceexpand.braceexpand(str(item).strip())]
    expanded = [url for url in expanded if url]
    if not expanded:
        raise ValueError(f"{name}: the shard pattern {urls!r} expands to no shards")
    missing = [url for url in expanded if _is_local(url) and not Path(url).is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise FileNotFoundError(f"{name}: shard file(s) not found: {shown}")
    return expanded


def split_shards(
    urls: Sequence[str], *, rank: int, world_size: int, worker: int, num_workers: int
) -> list[str]:
    """The shards of one dataloader worker on one rank (disjoint, together covering ``urls``)."""
    return list(urls)[rank::world_size][worker::num_workers]


@dataclass(frozen=True)
class ReaderShare:
    """What one reader (a dataloader worker on a rank) reads.

    Attributes:
        shards: the shard URLs it reads, in order.
        every: it keeps the samples ``i`` (counted over ``shards``) with ``i % every == offset``.
        offset: see ``every``.
    """

    shards: list[str]
    every: int
    offset: int


def assign_shards(
    urls: Sequence[str], *, rank: int, world_size: int, worker: int, num_workers: int
) -> ReaderShare:
    """Deal shards to ranks, then to workers; at a level with fewer shards than readers, every
    reader of that level reads them all and keeps every n-th sample. Disjoint and covering."""
    shards, every, offset = list(urls), 1, 0
    for index, count in ((rank, world_size), (worker, num_workers)):
        if len(shards) >= count:
            shards = shards[index::count]
        else:
            # Samples kept so far are offset + every * j; deal those j among ``count`` readers.
            every, offset = every * count, offset + every * index
    return ReaderShare(shards=shards, every=every, offset=offset)


@dataclass
class StreamOptions:
    """Iteration options of a stream (see ``WebVideoDataModule`` for each one's meaning)."""

    batch_size: int
    shuffle: bool
    seed: int
    shuffle_buffer: int
    resampled: bool
    epoch_length: int | None
    max_failure_fraction: float
    failure_check_after: int
    rank: int = 0
    world_size: int = 1


class WebVideoStream(IterableDataset):
    """Batches of one stream ("video" or "image") read from webdataset shards.

    Args:
        urls: expanded shard URLs.
        spec: how samples are decoded.
        options: splitting, shuffling, batching and failure options.
    """

    def __init__(self, *, urls: list[str], spec: SampleSpec, options: StreamOptions) -> None:
        super().__init__()
        self.urls = urls
        self.spec = spec
        self.options = options
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffle order (and the random clips and crops) of ``epoch``."""
        self.epoch = epoch

    def batches_per_rank(self) -> int | None:
        """Batches one rank yields per epoch when ``epoch_length`` is set, else ``None``."""
        opts = self.options
        if opts.epoch_length is None:
            return None
        return math.ceil(opts.epoch_length / (opts.world_size * opts.batch_size))

    def __len__(self) -> int:
        length = self.batches_per_rank()
        if length is None:
            raise TypeError("the stream has no length unless epoch_length is set")
        return length

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        opts = self.options
        rng = random.Random(f"{opts.seed}:{self.epoch}:{opts.rank}:{worker}")
        quota = self._worker_quota(worker, num_workers)
        state = _Counter(
            kind=self.spec.kind,
            where=f"rank {opts.rank} worker {worker}",
            guard=FailureGuard(
                max_failure_fraction=opts.max_failure_fraction,
                failure_check_after=opts.failure_check_after,
            ),
        )
        shards = self._shard_stream(worker, num_workers, rng, cycle=quota is not None, state=state)
        raw = tarfile_samples(({"url": url} for url in shards), handler=state.tar_handler)
        samples = self._decoded(_dealt(raw, state), rng, state)
        if opts.shuffle and opts.shuffle_buffer > 1:
            samples = _buffer_shuffle(samples, opts.shuffle_buffer, rng)
        yield from self._batched(samples, state, quota)

    def _worker_quota(self, worker: int, num_workers: int) -> int | None:
        per_rank = self.batches_per_rank()
        if per_rank is None:
            return None
        return per_rank // num_workers + (1 if worker < per_rank % num_workers else 0)

    def _shard_stream(
        self, worker: int, num_workers: int, rng: random.Random, *, cycle: bool, state: _Counter
    ) -> Iterator[str]:
        opts = self.options
        if opts.resampled:
            while True:
                state.url = rng.choice(self.urls)
                yield state.url
        order = list(self.urls)
        passes, raw_before, produced_before, mine_before = 0, 0, 0, 0
        while True:
            if opts.shuffle:
                # Same order on every rank (seed and epoch only) so the split stays disjoint.
                random.Random(f"{opts.seed}:{self.epoch}:{passes}:shards").shuffle(order)
            share = assign_shards(
                order, rank=opts.rank, world_size=opts.world_size, worker=worker,
                num_workers=num_workers,
            )
            state.every, state.offset = share.every, share.offset
            for url in share.shards:
                state.url = url
                yield url
            passes += 1
            if not cycle:
                return
            if state.raw == raw_before:
                raise ValueError(
                    f"{self.spec.kind} stream ({state.where}): shards {share.shards} hold no samples"
                )
            if state.produced == produced_before and state.mine > mine_before:
                # Cycling would never end: this reader can never fill its quota of batches.
                raise TooManyFailuresError(
                    f"{self.spec.kind} stream ({state.where}): a whole pass over shards "
                    f"{share.shards} gave no usable sample ({state.failed} bad so far); "
                    f"last: {state.last_error}"
                )
            raw_before, produced_before, mine_before = state.raw, state.produced, state.mine

    def _decoded(
        self, raw: Iterator[dict[str, Any]], rng: random.Random, state: _Counter
    ) -> Iterator[dict[str, Any]]:
        routed_in_a_row = 0
        shapes = ArrayShapes(expected_latents=self.spec.latent_shape)
        for sample in raw:
            where = route(sample, self.spec.kind)
            if where == "other":
                routed_in_a_row, state.routed = routed_in_a_row + 1, state.routed + 1
                stuck = routed_in_a_row >= _ROUTED_WITHOUT_MATCH and state.produced == 0
                if stuck and (self.options.resampled or self.options.epoch_length is not None):
                    raise ValueError(
                        f"{self.spec.kind} stream found no {self.spec.kind} samples in the first "
                        f"{routed_in_a_row} samples of {self.urls[:3]}...; wrong shard set?"
                    )
                continue
            routed_in_a_row = 0
            state.seen += 1
            state.mine += 1
            try:
                if where == "none":
                    fields = sorted(k for k in sample if not k.startswith("__"))
                    raise ValueError(f"no image, video or latents field (fields: {fields})")
                decoded = decode_sample(sample, self.spec, rng, shapes)
            except Exception as error:  # any bad media must not stop training
                state.fail(f"sample {sample.get('__key__')!r} in shard {state.url}: {error!r}")
                continue
            if shapes.note is not None:
                warnings.warn(
                    f"{self.spec.kind} stream ({state.where}): sample {decoded['key']!r} in shard "
                    f"{state.url}: {shapes.note}", LatentShapeWarning, stacklevel=2,
                )
                shapes.note = None
            state.produced += 1
            yield decoded
        if state.produced == 0 and state.seen == 0 and state.routed > 0:
            warnings.warn(
                f"{self.spec.kind} stream: this worker's shards held {state.routed} samples, "
                f"none of them {self.spec.kind}s",
                BadSampleWarning,
                stacklevel=2,
            )

    def _batched(
        self, samples: Iterator[dict[str, Any]], state: _Counter, quota: int | None
    ) -> Iterator[dict[str, Any]]:
        """Batches of ``batch_size`` (the last may be smaller), at most ``quota`` of them.

        One full batch is held back until the next one fills, so that samples skipped after
        the last full batch are still reported (in the final batch's ``skipped``).
        """
        if quota == 0:
            return
        emitted, held, pending = 0, None, []
        for sample in samples:
            pending.append(sample)
            if len(pending) < self.options.batch_size:
                continue
            if held is not None:
                yield collate(held, state.take_skipped())
                emitted += 1
            held, pending = pending, []
            if quota is not None and emitted + 1 >= quota:
                yield collate(held, state.take_skipped())
                return
        for batch in (held, pending):
            if batch:
                yield collate(batch, state.take_skipped())


class FailureGuard:
    """Bad samples over everything counted so far; raises once too large a fraction was bad.

    One guard lives in each worker pass (``_Counter``) and one per stream in the main process
    across all passes of a run (``EpochLoader``), so a small shard set that is half bad trips it
    even when a single pass sees fewer than ``failure_check_after`` samples.

    Args:
        max_failure_fraction: failed / seen above which :class:`TooManyFailuresError` is raised.
        failure_check_after: samples that must be seen before the fraction is checked.
    """

    def __init__(self, *, max_failure_fraction: float, failure_check_after: int) -> None:
        self.max_failure_fraction = max_failure_fraction
        self.failure_check_after = failure_check_after
        self.seen = 0
        self.failed = 0

    def add(self, *, seen: int, failed: int, what: str, last: str) -> None:
        """Count ``seen`` more samples of which ``failed`` were bad, then check the fraction.

        Args:
            seen: samples newly seen (good and bad).
            failed: how many of them were bad.
            what: the stream and place, for the message.
            last: the latest error, for the message.
        """
        self.seen, self.failed = self.seen + seen, self.failed + failed
        if self.seen >= self.failure_check_after and self.failed > self.max_failure_fraction * self.seen:
            raise TooManyFailuresError(
                f"{what}: {self.failed} of {self.seen} samples failed "
                f"({self.failed / self.seen:.1%} > max_failure_fraction="
                f"{self.max_failure_fraction}); last: {last}"
            )


Item = TypeVar("Item")
Result = TypeVar("Result")


def skip_unreadable(
    items: Iterable[Item],
    read: Callable[[Item], Result],
    *,
    name: Callable[[Item], str],
    what: str,
    skip_quietly: tuple[type[Exception], ...] = (),
    guard: FailureGuard | None = None,
) -> Iterator[tuple[Item, Result]]:
    """``(item, read(item))`` for each item that can be read, for tools that read files one by
    one: an item whose ``read`` raises is skipped with a :class:`BadSampleWarning` naming it,
    and the loader's failure guard stops the run (:class:`TooManyFailuresError`) once too large
    a fraction failed.

    Args:
        items: what to read (files, media items).
        read: decodes one item; any exception makes it a bad item.
        name: the item's name for messages (its path).
        what: the tool and source, for the guard's message.
        skip_quietly: exceptions that skip the item without counting it as bad (a video
            shorter than the clip: nothing is wrong with the file).
        guard: the failure guard (default: the loader's default fraction and count).
    """
    guard = guard or FailureGuard(
        max_failure_fraction=MAX_FAILURE_FRACTION, failure_check_after=FAILURE_CHECK_AFTER
    )
    for item in items:
        try:
            result = read(item)
        except skip_quietly as error:
            warnings.warn(f"skipping {name(item)}: {error}", BadSampleWarning, stacklevel=2)
            continue
        except Exception as error:  # one unreadable file must not stop the tool
            message = f"{name(item)}: {error!r}"
            warnings.warn(f"skipping unreadable {message}", BadSampleWarning, stacklevel=2)
            guard.add(seen=1, failed=1, what=what, last=message)
            continue
        guard.add(seen=1, failed=0, what=what, last="")
        yield item, result


class _Counter:
    """Per-worker bookkeeping: samples seen, failed, produced, and the shard being read.

    Args:
        kind: the stream's kind, for messages.
        where: the rank and worker, for messages.
        guard: the failure guard of this pass.
    """

    def __init__(self, *, kind: str, where: str, guard: FailureGuard) -> None:
        self.kind, self.where, self.guard = kind, where, guard
        self.raw = 0  # samples read from shards, before dealing and routing
        self.mine = 0  # samples of this stream's kind (or of no kind) that were tried
        self.seen = 0
        self.failed = 0
        self.produced = 0
        self.routed = 0
        self.skipped_since_batch = 0
        self.every, self.offset = 1, 0
        self.url = "?"
        self.last_error = ""

    def fail(self, message: str) -> None:
        self.failed += 1
        self.skipped_since_batch += 1
        self.last_error = message
        warnings.warn(f"skipping {message}", BadSampleWarning, stacklevel=3)
        # seen was already counted when the sample arrived; add it to the guard now.
        self.guard.add(seen=self.seen - self.guard.seen, failed=1, what=f"{self.kind} stream "
                       f"({self.where})", last=message)

    def tar_handler(self, error: Exception) -> bool:
        # A truncated or unreadable shard (or a member in it): count it and move on.
        self.seen += 1
        self.fail(f"unreadable data in shard {self.url}: {error!r}")
        return True

    def take_skipped(self) -> int:
        count, self.skipped_since_batch = self.skipped_since_batch, 0
        return count



def _dealt(raw: Iterator[dict[str, Any]], state: _Counter) -> Iterator[dict[str, Any]]:
    """Keep the samples dealt to this reader (all of them unless shards are shared)."""
    for sample in raw:
        index, state.raw = state.raw, state.raw + 1
        if index % state.every == state.offset:
            yield sample


def _buffer_shuffle(
    samples: Iterator[dict[str, Any]], size: int, rng: random.Random
) -> Iterator[dict[str, Any]]:
    """Shuffle a stream with a reservoir of ``size`` samples."""
    buffer: list[dict[str, Any]] = []
    for sample in samples:
        if len(buffer) < size:
            buffer.append(sample)
            continue
        index = rng.randrange(size)
        buffer[index], sample = sample, buffer[index]
        yield sample
    rng.shuffle(buffer)
    yield from buffer



def _is_local(url: str) -> bool:
    return not url.startswith("pipe:") and "://" not in url
