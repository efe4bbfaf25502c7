"""Atomic file writes: write to a temporary file beside the target, then rename.

A kill, a Ctrl-C or a full disk during the write leaves the previous file (or no file) at the
target path, never a truncated one. ``os.replace`` is atomic on POSIX and Windows when the
temporary file is on the same file system, which is why it is created in the target's folder.

Temporary files are named ``.<target name>.tmp-<random>``: hidden, and without the target's
extension, so no folder reader takes one for a media file or a shard. A ``kill -9`` still
leaves one behind; each writer removes its own stale ones when it starts again
(:func:`remove_stale_temporaries`). The target keeps its mode when it is replaced; a new file
gets the mode the umask gives any new file (not ``mkstemp``'s 0600).
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import secrets
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

TEMPORARY_MARK = ".tmp-"
# ``.<name>.tmp-<hex>`` (this module) or ``.<name>.<8 mkstemp characters><suffix>`` (the naming
# of earlier versions, whose leftovers carry the media extension).
_TEMPORARY = re.compile(r"^\.(?P<name>.+?)(?:\.tmp-[0-9a-f]+|\.[a-z0-9_]{8}(?P<suffix>\.[^.]*)?)$")
_ATTEMPTS = 100


def temporary_target(name: str) -> str | None:
    """The target file name a temporary file ``name`` was written for, or ``None`` when
    ``name`` is not one of this module's temporaries (new or old naming)."""
    match = _TEMPORARY.match(name)
    if match is None:
        return None
    target, suffix = match["name"], match["suffix"]
    if suffix is not None and not target.endswith(suffix):
        return None  # old naming repeats the target's suffix
    return target


def remove_stale_temporaries(
    folder: str | os.PathLike, patterns: str | Sequence[str]
) -> list[Path]:
    """Remove temporaries left in ``folder`` by a killed writer of files matching ``patterns``.

    Call it when a writer starts, before it writes anything: the temporaries of files matching
    ``patterns`` (``fnmatch`` patterns of file names, e.g. ``shard-*.tar``) are then left-overs
    of an earlier run of the same writer. Returns the removed paths.

    Args:
        folder: the folder the writer writes into (a missing folder holds nothing).
        patterns: the names of the files that writer writes.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    removed = []
    for path in sorted(folder.iterdir()):
        target = temporary_target(path.name)
        mine = target is not None and any(fnmatch.fnmatchcase(target, p) for p in patterns)
        if mine and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _create_temporary(path: Path) -> Path:
    """A new empty file ``.<name>.tmp-<random>`` beside ``path``, created with mode 0666 so that
    the umask decides its permissions, as for any new file."""
    for _ in range(_ATTEMPTS):
        tmp = path.parent / f".{path.name}{TEMPORARY_MARK}{secrets.token_hex(4)}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"no free temporary name beside {path} after {_ATTEMPTS} attempts")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    For writers that take a file name (``safetensors.torch.save_file``, ``torch.save``,
    ``webdataset.TarWriter``, PyAV, Pillow). The temporary name has no media extension: a writer
    that picks its format from the extension must be given the format. On any exception the
    temporary file is removed and the target is left as it was. A replaced target keeps its
    permission bits.

    Args:
        path: the final file path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _create_temporary(path)
    try:
        yield tmp_path
        with contextlib.suppress(FileNotFoundError):
            os.chmod(tmp_path, stat.S_IMODE(os.stat(path).st_mode))
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
