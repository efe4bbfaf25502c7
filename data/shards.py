"""Write samples into numbered webdataset tar shards, each one atomically.

A shard is written under a temporary name beside its final path and renamed onto it only
once it is complete (``common.atomic``), so a Ctrl-C, a kill or a full disk never leaves a
truncated shard under a final name: the shard being written is discarded, the finished ones
stay.
"""

from __future__ import annotations

import contextlib
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

from common.atomic import atomic_open

if TYPE_CHECKING:
    import webdataset as wds


class ShardSink:
    """Numbered tar shards from a printf pattern, each renamed into place when complete.

    Args:
        pattern: output pattern with one printf field, e.g. ``out/shard-%06d.tar``.
        max_samples: samples per shard.
        max_bytes: bytes per shard (a shard is closed once it reaches this size).
        mtime: modification time of every tar member, in whole seconds (a fixed value gives
            reproducible bytes); ``None`` uses the current time.
    """

    def __init__(
        self, pattern: str, *, max_samples: int = 1000, max_bytes: float = 1e9,
        mtime: float | None = None,
    ) -> None:
        if "%" not in pattern:
            raise ValueError(f"pattern needs a printf field such as %06d, got {pattern!r}")
        if max_samples < 1 or max_bytes <= 0:
            raise ValueError(
                f"max_samples must be >= 1 and max_bytes > 0, got {max_samples}, {max_bytes}"
            )
        self.pattern, self.max_samples, self.max_bytes = pattern, max_samples, max_bytes
        self.mtime = mtime
        self.paths: list[str] = []  # complete shards, in order
        self.samples = 0  # samples in complete shards
        self._stack: contextlib.ExitStack | None = None
        self._tar: wds.TarWriter | None = None
        self._count, self._size = 0, 0

    def write(self, sample: dict[str, Any]) -> None:
        """Add one sample (a webdataset dict with ``__key__``), starting a shard if needed."""
        if self._tar is None:
            self._open()
        self._size += self._tar.write(sample)
        self._count += 1
        if self._count >= self.max_samples or self._size >= self.max_bytes:
            self._finish()

    def close(self) -> None:
        """Finish the shard being written (if any)."""
        if self._tar is not None:
            self._finish()

    def abort(self) -> None:
        """Discard the shard being written; finished shards stay."""
        if self._stack is not None:
            stack, self._stack, self._tar = self._stack, None, None
            with contextlib.suppress(Exception):
                stack.__exit__(RuntimeError, RuntimeError("shard aborted"), None)

    def __enter__(self) -> ShardSink:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()

    def _open(self) -> None:
        import webdataset as wds  # imported on first use: ``import data.synthetic`` stays light

        stack = contextlib.ExitStack()
        handle = stack.enter_context(atomic_open(self.pattern % len(self.paths), "wb"))
        # Whole seconds: a fractional mtime (webdataset's default is time.time()) makes tarfile
        # add a PAX header to every member, which doubles the header parsing of every read.
        mtime = int(time.time() if self.mtime is None else self.mtime)
        self._stack, self._tar = stack, wds.TarWriter(handle, mtime=mtime)
        self._count, self._size = 0, 0

    def _finish(self) -> None:
        self._tar.close()  # writes the end-of-archive blocks; the file stays open
        stack, self._stack, self._tar = self._stack, None, None
        stack.close()  # fsync and rename onto the final name
        self.paths.append(self.pattern % len(self.paths))
        self.samples += self._count
