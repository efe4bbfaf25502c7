"""The memory promise: decoding 129 frames peaks within 1.25x of decoding 17 frames.

Each decode runs in a fresh subprocess; peak memory is the peak RSS (ru_maxrss) minus the RSS
once the model and the latent exist (see benchmarks/bench_tokenizer.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "bench_tokenizer.py"


def decode_peak(frames: int, size: int) -> float:
    cmd = [
        sys.executable,
        str(BENCH),
        "--worker",
        "--model",
        "walt",
        "--preset",
        "tiny",
        "--decode-only",
    ]
    cmd += ["--frames", str(frames), "--size", str(size), "--cpu"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mem_MiB"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_decoding_129_frames_stays_within_125_percent_of_17():
    small, large = decode_peak(17, 48), decode_peak(129, 48)
    assert small > 10, f"17-frame decode peak {small:.1f} MiB is too small to compare"
    assert large <= 1.25 * small, f"129 frames: {large:.0f} MiB vs 17 frames: {small:.0f} MiB"
