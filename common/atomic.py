"""Atomic file writes: write to a temporary file beside the target, then rename.

A kill, a Ctrl-C or a full disk during the write leaves the previous file (or no file) at the
target path, never a truncated one. ``os.replace`` is atomic on POSIX and Windows when the
temporary file is on the same file system, which is why it is created in the target's folder.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    For writers that take a file name (``safetensors.torch.save_file``, ``torch.save``,
    ``webdataset.TarWriter``, PyAV). On any exception the temporary file is removed and the
    target is left as it was.

    Args:
        path: the final file path.
        suffix: suffix of the temporary file (default: the target's own, so writers that pick a
            format from the extension still see it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=path.suffix if suffix is None else suffix, dir=path.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", **kwargs) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; rename it onto ``path`` on success.

    Args:
        path: the final file path.
        mode: a write mode (``"w"``, ``"wb"``, ``"wt"``).
        **kwargs: passed to ``open`` (``encoding``, ``newline``).
    """
    if not any(m in mode for m in "wx"):
        raise ValueError(f"atomic_open writes a new file; mode must be a write mode, got {mode!r}")
    with atomic_path(path) as tmp, open(tmp, mode.replace("x", "w"), **kwargs) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())
