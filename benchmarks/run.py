"""The benchmark suite: one markdown table per part, optionally all of it as JSON.

    python benchmarks/run.py [--suite NAME ...] [--json OUT] [--quick] [--device cpu|cuda]

Parts (``--suite``; default all, always preceded by ``ceilings``, which every other figure is
held against):

- ``ceilings``: fp32 / bf16 matmul and 3x3x3 conv3d GFLOP/s of this device, measured now;
- ``backbone``: training step (forward, backward, AdamW) of walt (whole-frame and 1x16x16 S
  windows, 5x8x8 ST windows) against diffusers' Latte and CogVideoX, with MFU from the analytic
  FLOPs of ``benchmarks/flops.py`` over the measured fp32 matmul peak;
- ``scaling``: step time against tokens, windowed (walt, 1x16x16 + 5x8x8) against full attention
  (CogVideoX);
- ``tokenizer``: encode / decode time per frame, peak memory and GFLOP/s of the walt CausalVAE
  against diffusers' Wan and CogVideoX VAEs;
- ``loader``: clips/s of the data loader against the tiny model's training step;
- ``sampling``: seconds per clip, 50 DDIM against 20 DPM-Solver++ steps (tiny model);
- ``precision``: the tiny CPU configs' training step in fp32 against bf16 autocast.

Every part runs in its own spawned process (and the backbone and tokenizer models each in
their own), so CPU peak memory (``ru_maxrss``) belongs to one measurement. ``--quick`` shrinks
every part (tiny widths and grids, one step) to exercise the code paths in seconds; its
numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from harness import isolated, markdown_table  # noqa: E402
from suite_parts import PARTS  # noqa: E402


def machine() -> dict[str, Any]:
    import diffusers
    import torch

    return {
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "load_average": list(os.getloadavg()),
    }


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def finite_ratios(parts: dict[str, Any]) -> bool:
    """True when every ``*ratio*`` / ``mfu`` value of every row is a finite number."""
    for part in parts.values():
        for row in part["rows"]:
            for key, value in row.items():
                if ("ratio" in key or key == "mfu") and value is not None:
                    if not math.isfinite(value):
                        return False
    return True


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--suite", nargs="+", choices=list(PARTS), default=list(PARTS))
    parser.add_argument("--json", type=Path, default=None, help="write every table here")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: code paths only")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    names = ["ceilings"] + [n for n in args.suite if n != "ceilings"]
    opts = {"quick": args.quick, "device": args.device, "threads": args.threads}
    meta = {**machine(), "command": " ".join(["benchmarks/run.py", *(argv or sys.argv[1:])])}
    print(f"# {meta['date_utc']}: {meta['cpu']}, {meta['cores']} cores, torch {meta['torch']}, "
          f"diffusers {meta['diffusers']}, load average {meta['load_average']}", flush=True)
    parts: dict[str, Any] = {}
    for name in names:
        start = time.perf_counter()
        part = isolated(PARTS[name], opts=opts, ceilings=parts.get("ceilings"))
        part["wall_s"] = time.perf_counter() - start
        parts[name] = part
        print(f"\n## {part['title']}\n\n{markdown_table(part['rows'], part['columns'])}")
        for note in part.get("notes", []):
            print(f"\n{note}")
        sys.stdout.flush()
        meta["load_average_after"] = list(os.getloadavg())
        _write(args.json, {"meta": meta, "options": opts, "parts": parts})  # after every part
    if not finite_ratios(parts):
        raise SystemExit("a ratio or MFU is not finite: see the tables above")
    return {"meta": meta, "options": opts, "parts": parts}


def _write(path: Path | None, result: dict[str, Any]) -> None:
    """Write the JSON so far (a stopped run keeps its finished parts)."""
    if path is not None:
        from common.atomic import atomic_open

        with atomic_open(path, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
