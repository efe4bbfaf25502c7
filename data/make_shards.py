"""Write a folder of videos and images as webdataset shards.

Usage::

    python -m data.make_shards SRC OUT_PATTERN [--labels labels.csv] [--max-samples N]
        [--max-bytes B] [--max-pixels P] [--reencode --size 256 --fps 8 [--keep-aspect]]

``OUT_PATTERN`` is a printf pattern such as ``out/shard-%06d.tar``. Each media file becomes
one sample: the media under its extension, ``txt`` from a ``name.txt`` caption beside it,
``cls`` from ``--labels``, and ``json`` metadata (fps, size, frame count when known, source).
Keys are unique (a collision gets a distinct key and a warning); each shard is written under a
temporary name and renamed when complete; unreadable or oversized files are skipped and listed
at the end with the reason. See docs/data.md.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm import tqdm

from data.decode import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    check_pixels,
    probe_video,
)
from data.encode import reencode_video
from data.shards import ShardSink

_EXIF_ORIENTATION = 0x0112
_SWAPPED_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that turn the image by 90 degrees


@dataclass(frozen=True)
class Labels:
    """Class labels of media files.

    Attributes:
        by_name: relative path (and, as a fallback, file stem) to class index.
        class_names: index to class name.
    """

    by_name: dict[str, int]
    class_names: list[str]

    def lookup(self, relative: str) -> int | None:
        if relative in self.by_name:
            return self.by_name[relative]
        return self.by_name.get(Path(relative).stem)


def load_labels(path: Path) -> Labels:
    """Read labels from CSV (``file,label`` rows, a header optional) or JSON.

    ``label`` may be an integer index or a class name; class names are numbered in sorted
    order unless JSON gives ``{"class_names": [...], "labels": {file: label}}``.
    """
    if path.suffix.lower() == ".json":
        content = json.loads(path.read_text())
        raw = content.get("labels", content) if isinstance(content, dict) else None
        names = list(content.get("class_names", [])) if isinstance(content, dict) else []
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a JSON object of file -> label")
    else:
        with path.open(newline="") as handle:
            rows = [row for row in csv.reader(handle) if row and not row[0].startswith("#")]
        if rows and rows[0][0].strip().lower() in ("file", "path", "name", "filename"):
            rows = rows[1:]
        if any(len(row) < 2 for row in rows):
            raise ValueError(f"{path}: every row needs 'file,label'")
        raw, names = {row[0].strip(): row[1].strip() for row in rows}, []
    text_labels = sorted({str(v) for v in raw.values() if not str(v).lstrip("-").isdigit()})
    names = names or text_labels
    index = {name: i for i, name in enumerate(names)}
    by_name: dict[str, int] = {}
    for file, label in raw.items():
        label = str(label)
        if label.lstrip("-").isdigit():
            by_name[file] = int(label)
        elif label in index:
            by_name[file] = index[label]
        else:
            raise ValueError(f"{path}: label {label!r} of {file!r} is not in class_names")
    return Labels(by_name=by_name, class_names=names)


class KeyCollisionWarning(UserWarning):
    """Two media files map to the same key; the later one got a distinct key."""


@dataclass
class ShardReport:
    """What a :func:`write_shards` run wrote, filled in as it goes (so an interrupted run
    can still report it).

    Attributes:
        written: samples in complete shards.
        paths: complete shard files.
        failed: ``"path: reason"`` for each skipped file.
        renamed: ``"path: key"`` for each file whose key was changed by a collision.
        removed: shards of an earlier run of the pattern, numbered past this run's, removed.
    """

    written: int = 0
    paths: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    renamed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def sample_key(relative: str) -> str:
    """A webdataset key from a relative path (no dots: the first dot starts the extension).

    The extension is dropped and every character other than letters, digits, ``_`` and ``-``
    becomes ``_`` (so ``a/b.c.mp4`` -> ``a_b_c``).
    """
    return re.sub(r"[^A-Za-z0-9_\-]", "_", str(Path(relative).with_suffix("")))


def unique_key(relative: str, taken: set[str]) -> str:
    """:func:`sample_key`, or when an earlier file already has it, the key plus ``_<ext>``
    (``clip.jpg`` beside ``clip.mp4`` -> ``clip_jpg``), plus ``_2``, ``_3``... if still taken."""
    key = sample_key(relative)
    if key not in taken:
        return key
    base = f"{key}_{Path(relative).suffix.lstrip('.').lower()}"
    key, number = base, 2
    while key in taken:
        key, number = f"{base}_{number}", number + 1
    return key


def media_files(source: Path) -> list[Path]:
    """Video and image files under ``source``, sorted. Hidden files and folders (a name
    starting with ``.``) are left out: the temporary files of an interrupted write are hidden
    (``common.atomic``), and so are editors' and file managers' own files."""
    extensions = {f".{ext}" for ext in VIDEO_EXTENSIONS + IMAGE_EXTENSIONS}
    return sorted(
        p for p in source.rglob("*")
        if p.is_file() and p.suffix.lower() in extensions
        and not any(part.startswith(".") for part in p.relative_to(source).parts)
    )


def build_sample(
    path: Path,
    source: Path,
    *,
    labels: Labels | None,
    reencode: tuple[int, float] | None,
    keep_aspect: bool = False,
    key: str | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> dict[str, Any]:
    """One webdataset sample for ``path``; raises when the file cannot be read or is over
    ``max_pixels`` (sizes come from headers: nothing larger is decoded)."""
    relative = path.relative_to(source).as_posix()
    ext = path.suffix.lower().lstrip(".")
    data = path.read_bytes()
    meta: dict[str, Any] = {"source": relative}
    if ext in VIDEO_EXTENSIONS:
        info = probe_video(data, max_pixels=max_pixels)
        if reencode is not None:
            size, fps = reencode
            data = reencode_video(data, size=size, fps=fps, keep_aspect=keep_aspect,
                                  max_pixels=max_pixels)
            ext = "mp4"
            info = probe_video(data, max_pixels=max_pixels)
        meta.update(kind="video", fps=info.fps, width=info.width, height=info.height)
        meta["frames"] = info.num_frames
        meta["duration"] = info.duration
    else:
        width, height = _image_header(data, max_pixels=max_pixels)
        meta.update(kind="image", width=width, height=height)
    sample: dict[str, Any] = {"__key__": key or sample_key(relative), ext: data}
    caption = path.with_suffix(".txt")
    if caption.is_file():
        sample["txt"] = caption.read_text().strip()
    label = labels.lookup(relative) if labels is not None else None
    if label is not None:
        sample["cls"] = str(label)
        meta["class_name"] = labels.class_names[label] if 0 <= label < len(labels.class_names) else None
    sample["json"] = json.dumps(meta)
    return sample


def _image_header(data: bytes, *, max_pixels: int | None) -> tuple[int, int]:
    """Displayed ``(width, height)`` of an image from its header (EXIF rotation applied),
    checked against ``max_pixels``; the file's structure is verified without decoding pixels."""
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        check_pixels(width, height, max_pixels=max_pixels)
        if "exif" in image.info:  # Image.getexif() would decode a PNG's pixels to find it
            exif = Image.Exif()
            exif.load(image.info["exif"])
            if exif.get(_EXIF_ORIENTATION) in _SWAPPED_ORIENTATIONS:
                width, height = height, width
        image.verify()
    return width, height


def write_shards(
    source: Path,
    pattern: str,
    *,
    labels: Labels | None = None,
    max_samples: int = 1000,
    max_bytes: float = 1e9,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    reencode: tuple[int, float] | None = None,
    keep_aspect: bool = False,
    progress: bool = True,
    report: ShardReport | None = None,
) -> dict[str, Any]:
    """Write every media file under ``source`` into shards; returns a summary dict.

    Args:
        source: folder searched recursively for media.
        pattern: printf output pattern, e.g. ``out/shard-%06d.tar``.
        labels: class labels, or ``None``.
        max_samples: samples per shard.
        max_bytes: bytes per shard.
        max_pixels: pixels per frame above which a file is skipped (``None``: no cap).
        reencode: ``(size, fps)`` to re-encode videos, or ``None`` to store them as they are.
        keep_aspect: re-encode with the short side ``size`` instead of a centred square.
        progress: show a progress bar.
        report: filled in as shards complete, so a caller can report an interrupted run.

    Returns:
        ``{"written", "shards", "paths", "failed", "renamed", "removed", "pattern"}``.
    """
    if not source.is_dir():
        raise FileNotFoundError(f"source folder not found: {source}")
    files = media_files(source)
    if not files:
        raise ValueError(f"no video or image files under {source}")
    report = report if report is not None else ShardReport()
    taken: set[str] = set()
    with ShardSink(pattern, max_samples=max_samples, max_bytes=max_bytes) as sink:
        for path in tqdm(files, desc="shards", unit="file", disable=not progress):
            relative = path.relative_to(source).as_posix()
            key = unique_key(relative, taken)
            try:
                sample = build_sample(path, source, labels=labels, reencode=reencode,
                                      keep_aspect=keep_aspect, key=key, max_pixels=max_pixels)
            except Exception as error:  # an unreadable file is listed, not fatal
                report.failed.append(f"{path}: {error!r}")
                continue
            if key != sample_key(relative):
                report.renamed.append(f"{path}: {key}")
                warnings.warn(f"{relative}: key {sample_key(relative)!r} is taken by an earlier "
                              f"file; this one is stored as {key!r}", KeyCollisionWarning,
                              stacklevel=2)
            taken.add(key)
            sink.write(sample)
            report.paths[:], report.written = sink.paths, sink.samples
        sink.close()
        report.paths[:], report.written = sink.paths, sink.samples
        report.removed[:] = sink.removed
    return {"written": report.written, "shards": len(report.paths), "paths": list(report.paths),
            "failed": report.failed, "renamed": report.renamed, "removed": report.removed,
            "pattern": pattern}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data.make_shards", description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path, help="folder of videos and images (searched recursively)")
    parser.add_argument("pattern", help="output pattern, e.g. out/shard-%%06d.tar")
    parser.add_argument("--labels", type=Path, help="CSV (file,label) or JSON of labels")
    parser.add_argument("--max-samples", type=int, default=1000, help="samples per shard")
    parser.add_argument("--max-bytes", type=float, default=1e9, help="bytes per shard")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help="skip media whose frames have more pixels (0: no cap)")
    parser.add_argument("--reencode", action="store_true", help="re-encode videos (H.264 mp4)")
    parser.add_argument("--size", type=int, default=256, help="re-encode: square frame size")
    parser.add_argument("--fps", type=float, default=8.0, help="re-encode: frame rate")
    parser.add_argument("--keep-aspect", action="store_true",
                        help="re-encode: short side --size, whole frame (not a square crop)")
    args = parser.parse_args(argv)
    if "%" not in args.pattern:
        parser.error(f"pattern needs a printf field such as %06d, got {args.pattern!r}")
    labels = load_labels(args.labels) if args.labels else None
    report = ShardReport()
    try:
        write_shards(
            args.source,
            args.pattern,
            labels=labels,
            max_samples=args.max_samples,
            max_bytes=args.max_bytes,
            max_pixels=args.max_pixels or None,
            reencode=(args.size, args.fps) if args.reencode else None,
            keep_aspect=args.keep_aspect,
            report=report,
        )
    except (KeyboardInterrupt, OSError) as error:
        _print_report(report, args.pattern, interrupted=error)
        return 130 if isinstance(error, KeyboardInterrupt) else 1
    _print_report(report, args.pattern, interrupted=None)
    return 0 if report.written else 1


def _print_report(report: ShardReport, pattern: str, *, interrupted: BaseException | None) -> None:
    for line in report.failed:
        print(f"skipped {line}", file=sys.stderr)
    for line in report.renamed:
        print(f"renamed {line} (key collision)", file=sys.stderr)
    for line in report.removed:
        print(f"removed {line} (a shard of an earlier, larger run of the pattern)", file=sys.stderr)
    if interrupted is not None:
        print(f"interrupted ({interrupted!r}): the shard being written was discarded; the "
              f"complete shards below are valid", file=sys.stderr)
    print(
        f"wrote {report.written} samples into {len(report.paths)} shard(s) ({pattern}); "
        f"skipped {len(report.failed)} file(s); renamed {len(report.renamed)} key(s); removed "
        f"{len(report.removed)} stale shard(s)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
