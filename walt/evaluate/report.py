"""Printing a results table and writing the JSON report (atomically, via ``common.atomic``)."""

from __future__ import annotations

import json
from pathlib import Path

from common.atomic import atomic_open


def format_value(summary: dict) -> str:
    """``"mean ± std (n draws)"`` of a :func:`walt.evaluate.draws.summarize` result."""
    n = len(summary["draws"])
    return f"{summary['mean']:.4f} ± {summary['std']:.4f} ({n} draw{'s' if n != 1 else ''})"


def print_table(rows: list[tuple[str, str]], *, title: str) -> None:
    """Two aligned columns under a title."""
    width = max(len(name) for name, _ in rows)
    print(title)
    for name, value in rows:
        print(f"  {name.ljust(width)}  {value}")


def write_json(path: str | Path, result: dict) -> Path:
    """Write ``result`` as indented JSON; a kill mid-write leaves no truncated file."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2, allow_nan=False)
        f.write("\n")
    return Path(path)
