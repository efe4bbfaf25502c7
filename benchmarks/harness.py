"""What every benchmark shares: one timing helper, peak memory, isolated processes, tables.

- :func:`time_runs` is the only timing loop of the benchmarks (warm-up, then ``reps`` timed
  calls, synchronising CUDA around each).
- :class:`MemoryProbe` is the only peak-memory reader: CUDA ``max_memory_allocated``; CPU the
  process' peak RSS (``ru_maxrss``) above its RSS when the probe started.
- :func:`isolated` runs a function in a fresh spawned process, so a CPU peak belongs to that
  measurement alone (``ru_maxrss`` never goes down within a process).
"""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_module
import resource
import statistics
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def synchronize(device: Any) -> None:
    """Wait for queued CUDA work (no-op on CPU)."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_runs(fn: Callable[[], Any], *, warmup: int = 1, reps: int = 3, device: Any = "cpu"):
    """Seconds of each of ``reps`` calls of ``fn`` after ``warmup`` untimed calls."""
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def median(times: Sequence[float]) -> float:
    return statistics.median(times)


def rss_mib() -> float:
    """Current resident set size of this process in MiB (Linux ``VmRSS``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("VmRSS not found in /proc/self/status")


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class MemoryProbe:
    """Peak memory of what runs after :meth:`start` (see the module docstring)."""

    def __init__(self, *, device: Any = "cpu") -> None:
        """Args:
        device: the device whose memory is measured (``"cpu"`` or a CUDA device).
        """
        import torch

        self.cuda = torch.device(device).type == "cuda"
        self.base = 0.0

    def start(self) -> MemoryProbe:
        import torch

        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        else:
            self.base = rss_mib()
        return self

    def peak_mib(self) -> float:
        import torch

        if self.cuda:
            return torch.cuda.max_memory_allocated() / 2**20
        return peak_rss_mib() - self.base


def _child(fn: Callable[..., Any], args: tuple, kwargs: dict, queue: mp.Queue) -> None:
    try:
        queue.put(("ok", fn(*args, **kwargs)))
    except BaseException:  # report every failure to the parent, which raises it
        queue.put(("error", traceback.format_exc()))


def isolated(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` in a fresh spawned process; returns its (picklable) result.

    Raises:
        RuntimeError: the child raised (its traceback is in the message) or died.
    """
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fn, args, kwargs, queue))
    proc.start()
    try:
        while True:
            try:
                status, value = queue.get(timeout=1.0)
                break
            except queue_module.Empty:
                if not proc.is_alive():  # died without reporting (e.g. killed for memory)
                    raise RuntimeError(
                        f"{fn.__name__} died (exit code {proc.exitcode})"
                    ) from None
    finally:
        proc.join()
    if status != "ok":
        raise RuntimeError(f"{fn.__name__}{args} failed in its process:\n{value}")
    return value


Column = tuple[str, str, str]  # (row key, header, format spec)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> str:
    """One markdown table; a missing or ``None`` value prints as ``-``."""

    def cell(row: dict[str, Any], key: str, spec: str) -> str:
        value = row.get(key)
        if value is None:
            return "-"
        return format(value, spec) if spec else str(value)

    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(cell(r, k, s) for k, _, s in columns) + " |" for r in rows]
    return "\n".join(lines)
