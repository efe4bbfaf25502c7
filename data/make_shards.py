"""Write a folder of videos and images as webdataset shards.

Usage::

    python -m data.make_shards SRC OUT_PATTERN [--labels labels.csv] [--max-samples N]
        [--max-bytes B] [--reencode --size 256 --fps 8]

``OUT_PATTERN`` is a printf pattern such as ``out/shard-%06d.tar``. Each media file becomes
one sample: the media under its extension, ``txt`` from a ``name.txt`` caption beside it,
``cls`` from ``--labels``, and ``json`` metadata (fps, size, frame count when known, source).
Unreadable files are skipped and listed at the end. See docs/data.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from data.decode import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, decode_image, probe_video
from data.encode import reencode_video


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


def sample_key(relative: str) -> str:
    """A webdataset key from a relative path (no dots: the first dot starts the extension)."""
    return re.sub(r"[^A-Za-z0-9_\-]", "_", str(Path(relative).with_suffix("")))


def media_files(source: Path) -> list[Path]:
    """Video and image files under ``source``, sorted."""
    extensions = {f".{ext}" for ext in VIDEO_EXTENSIONS + IMAGE_EXTENSIONS}
    return sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in extensions)


def build_sample(
    path: Path,
    source: Path,
    *,
    labels: Labels | None,
    reencode: tuple[int, float] | None,
) -> dict[str, Any]:
    """One webdataset sample for ``path``; raises when the file cannot be decoded."""
    relative = path.relative_to(source).as_posix()
    ext = path.suffix.lower().lstrip(".")
    data = path.read_bytes()
    meta: dict[str, Any] = {"source": relative}
    if ext in VIDEO_EXTENSIONS:
        if reencode is not None:
            data, ext = reencode_video(data, size=reencode[0], fps=reencode[1]), "mp4"
        info = probe_video(data)
        meta.update(kind="video", fps=info.fps, width=info.width, height=info.height)
        meta["frames"] = info.num_frames
        meta["duration"] = info.duration
    else:
        height, width = decode_image(data).shape[:2]
        meta.update(kind="image", width=width, height=height)
    sample: dict[str, Any] = {"__key__": sample_key(relative), ext: data}
    caption = path.with_suffix(".txt")
    if caption.is_file():
        sample["txt"] = caption.read_text().strip()
    label = labels.lookup(relative) if labels is not None else None
    if label is not None:
        sample["cls"] = str(label)
        meta["class_name"] = labels.class_names[label] if 0 <= label < len(labels.class_names) else None
    sample["json"] = json.dumps(meta)
    return sample


def write_shards(
    source: Path,
    pattern: str,
    *,
    labels: Labels | None = None,
    max_samples: int = 1000,
    max_bytes: float = 1e9,
    reencode: tuple[int, float] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Write every media file under ``source`` into shards; returns a summary dict."""
    import webdataset as wds

    if not source.is_dir():
        raise FileNotFoundError(f"source folder not found: {source}")
    files = media_files(source)
    if not files:
        raise ValueError(f"no video or image files under {source}")
    Path(pattern).parent.mkdir(parents=True, exist_ok=True)
    written, failed, keys = 0, [], set()
    with wds.ShardWriter(pattern, maxcount=max_samples, maxsize=max_bytes, verbose=0) as sink:
        for path in tqdm(files, desc="shards", unit="file", disable=not progress):
            try:
                sample = build_sample(path, source, labels=labels, reencode=reencode)
            except Exception as error:  # an unreadable file is listed, not fatal
                failed.append(f"{path}: {error!r}")
                continue
            if sample["__key__"] in keys:
                failed.append(f"{path}: duplicate key {sample['__key__']!r}")
                continue
            keys.add(sample["__key__"])
            sink.write(sample)
            written += 1
        shards = sink.shard if written else 0
    return {"written": written, "failed": failed, "shards": shards, "pattern": pattern}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data.make_shards", description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path, help="folder of videos and images (searched recursively)")
    parser.add_argument("pattern", help="output pattern, e.g. out/shard-%%06d.tar")
    parser.add_argument("--labels", type=Path, help="CSV (file,label) or JSON of labels")
    parser.add_argument("--max-samples", type=int, default=1000, help="samples per shard")
    parser.add_argument("--max-bytes", type=float, default=1e9, help="bytes per shard")
    parser.add_argument("--reencode", action="store_true", help="re-encode videos (H.264 mp4)")
    parser.add_argument("--size", type=int, default=256, help="re-encode: square frame size")
    parser.add_argument("--fps", type=float, default=8.0, help="re-encode: frame rate")
    args = parser.parse_args(argv)
    if "%" not in args.pattern:
        parser.error(f"pattern needs a printf field such as %06d, got {args.pattern!r}")
    labels = load_labels(args.labels) if args.labels else None
    summary = write_shards(
        args.source,
        args.pattern,
        labels=labels,
        max_samples=args.max_samples,
        max_bytes=args.max_bytes,
        reencode=(args.size, args.fps) if args.reencode else None,
    )
    for line in summary["failed"]:
        print(f"skipped {line}", file=sys.stderr)
    print(
        f"wrote {summary['written']} samples into {summary['shards']} shard(s) "
        f"({args.pattern}); skipped {len(summary['failed'])} file(s)"
    )
    return 0 if summary["written"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
