"""Write samples into numbered webdataset tar shards, each one atomically.

A shard is written under a temporary name beside its final path and renamed onto it only
once it is complete (``common.atomic``), so a Ctrl-C, a kill or a full disk never leaves a
truncated shard under a final name: the shard being written is discarded, the finished ones
stay. A writer starting on a pattern removes the temporaries a killed writer of the same
pattern left; one that completes removes the shards of the same pattern numbered past its own
(an earlier, larger run's), with a :class:`StaleShardWarning`, so the pattern never holds a
mix of two runs.
"""

from __future__ import annotations

import contextlib
import re
import time
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any

import webdataset as wds

from common.atomic import atomic_open, remove_stale_temporaries


class StaleShardWarning(UserWarning):
    """Shards of an earlier run of the same pattern, numbered past this run's, were removed."""


_FIELD = re.compile(r"%[-+ #0-9]*d")  # the printf field of a shard pattern


def pattern_glob(pattern: str) -> str:
    """The file-name glob of a printf shard pattern (``shard-%06d.tar`` -> ``shard-*.tar``)."""
    return _FIELD.sub("*", Path(pattern).name, count=1)


def numbered_shards(pattern: str) -> dict[int, Path]:
    """The existing files named ``pattern % i``, by ``i``."""
    folder, name = Path(pattern).parent, Path(pattern).name
    before, _, after = _split(name)
    number = re.compile(re.escape(before) + r"(\d+)" + re.escape(after))
    found = {}
    for path in folder.iterdir() if folder.is_dir() else ():
        match = number.fullmatch(path.name)
        if match and Path(pattern % int(match[1])).name == path.name:
            found[int(match[1])] = path
    return found


def _split(name: str) -> tuple[str, str, str]:
    match = _FIELD.search(name)
    if match is None:
        raise ValueError(f"pattern needs a printf field such as %06d in its file name, got {name!r}")
    return name[: match.start()], match[0], name[match.end():]


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
        _split(Path(pattern).name)  # the field must be in the file name, not only the folder
        self.pattern, self.max_samples, self.max_bytes = pattern, max_samples, max_bytes
        self.mtime = mtime
        self.paths: list[str] = []  # complete shards, in order
        self.samples = 0  # samples in complete shards
        self.removed: list[str] = []  # stale shards of an earlier run removed by close()
        remove_stale_temporaries(Path(pattern).parent, pattern_glob(pattern))
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
        """Finish the shard being written (if any); then, when this run wrote shards, remove
        the shards of the pattern numbered past them (left by an earlier, larger run)."""
        if self._tar is not None:
            self._finish()
        if not self.paths:
            return  # nothing new: what the pattern holds is still one (earlier) run
        stale = sorted(i for i in numbered_shards(self.pattern) if i >= len(self.paths))
        for i in stale:
            Path(self.pattern % i).unlink(missing_ok=True)
            self.removed.append(self.pattern % i)
        if stale:
            shown = ", ".join(self.removed[-len(stale):][:3]) + (" ..." if len(stale) > 3 else "")
            warnings.warn(
                f"removed {len(stale)} shard(s) of an earlier run of {self.pattern} numbered past "
                f"this run's {len(self.paths)}: {shown}", StaleShardWarning, stacklevel=2,
            )

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
