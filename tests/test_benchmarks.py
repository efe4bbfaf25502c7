"""The benchmark suite's code paths (``benchmarks/run.py --quick``) and its FLOP formulas."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from flops import backbone_flops  # noqa: E402


def test_run_quick_writes_every_table_with_finite_ratios(tmp_path: Path) -> None:
    out = tmp_path / "suite.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--threads", "1",
           "--suite", "ceilings", "scaling", "--json", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert {"meta", "options", "parts"} <= result.keys()
    assert result["options"]["quick"] is True
    assert list(result["parts"]) == ["ceilings", "scaling"]
    kernels = [r["kernel"] for r in result["parts"]["ceilings"]["rows"]]
    assert kernels == ["matmul float32", "matmul bfloat16", "conv3d fp32"]
    for part in result["parts"].values():
        assert part["rows"] and part["columns"]
        for row in part["rows"]:
            for key, _, _ in part["columns"]:
                assert key in row, key
    rows = result["parts"]["scaling"]["rows"]
    assert [r["tokens"] for r in rows] == [32, 64]
    for row in rows:
        for key in ("full_over_windowed_ratio", "windowed_mfu", "full_mfu"):
            assert math.isfinite(row[key]) and row[key] > 0, key
    assert "| --- |" in done.stdout and "## Scaling" in done.stdout


def test_backbone_flops_count_linear_and_windowed_attention() -> None:
    # One S block on a 1x4x4 grid, width 8: linear 24 N D^2, attention 4 n^2 D in one window.
    n, d = 16, 8
    got = backbone_flops("walt", (1, 4, 4), depth=1, hidden=d, channels=1)
    embed = 2 * n * d * 4 + 2 * n * d * 1  # self-cond doubles, frame-cond adds c + 1 channels
    assert got["linear"] == pytest.approx(3 * (24 * n * d**2 + embed))
    assert got["attention"] == pytest.approx(3 * 4 * n**2 * d)
    # Full attention over the same tokens plus text costs more than windows of a quarter.
    windowed = backbone_flops("walt", (1, 4, 4), depth=1, hidden=d, spatial_window=(2, 2))
    assert windowed["attention"] == pytest.approx(got["attention"] / 4)
    with pytest.raises(ValueError, match="model"):
        backbone_flops("unet", (1, 4, 4), depth=1, hidden=d)


def test_precision_part_times_both_tiny_configs_in_fp32_and_bf16() -> None:
    from bench_precision import COLUMNS, measure

    rows = measure(1, warmup=0)
    assert [r["network"].split(",")[0] for r in rows] == ["W.A.L.T backbone", "tokenizer VAE"]
    for row in rows:
        assert {key for key, _, _ in COLUMNS} <= row.keys()
        assert all(math.isfinite(row[k]) and row[k] > 0 for k in ("fp32_s", "bf16_s", "ratio"))
        assert row["ratio"] == row["bf16_s"] / row["fp32_s"]


def test_backbone_ratio_uses_the_grids_walt_row() -> None:
    """Each grid's ratio column holds walt's tokens/s over each model's; where whole-frame walt
    is not timed (5x64x112 on CPU) the 1x16x16-window walt is the reference."""
    from suite_parts import _backbone_plan, _backbone_rows

    _, plan = _backbone_plan(False, "cpu")
    assert ((5, 64, 112), ["walt-sw16", "latte"]) in [(grid, models) for grid, _, models in plan]
    assert {o.get("precision", "32-true") for _, o, _ in plan} == {"32-true", "bf16-mixed"}
    bf16 = {"precision": "bf16-mixed"}
    results = [{"grid": "5x8x8", "model": "walt", "tokens_per_s": 30.0, "gflops_per_s": 1.0},
               {"grid": "5x8x8", "model": "latte", "tokens_per_s": 20.0, "gflops_per_s": 1.0},
               {"grid": "5x64x112", "model": "walt-sw16", "tokens_per_s": 9.0, "gflops_per_s": 1.0},
               {"grid": "5x64x112", "model": "latte", "tokens_per_s": 6.0, "gflops_per_s": 2.0},
               {"grid": "5x8x8", "model": "walt", "tokens_per_s": 90.0, "gflops_per_s": 8.0, **bf16},
               {"grid": "5x8x8", "model": "latte", "tokens_per_s": 30.0, "gflops_per_s": 4.0, **bf16}]
    rows = _backbone_rows(results, {"32-true": 4.0, "bf16-mixed": 16.0})
    assert [r["walt_ratio"] for r in rows] == [1.0, 1.5, 1.0, 1.5, 1.0, 3.0]  # within a precision
    assert [r["mfu"] for r in rows] == [0.25, 0.25, 0.25, 0.5, 0.5, 0.25]
    assert [r["fp32_peak_ratio"] for r in rows][-2:] == [2.0, 1.0]


def test_loader_part_times_every_feeding_path(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from bench_loader import fed_step_clips_per_second, loader_clips_per_second, write_latent_shard

    from data.synthetic import main as synthetic_main

    shard = tmp_path / "clips-000000.tar"
    synthetic_main([str(tmp_path / "clips-%06d.tar"), "--num-videos", "4", "--frames", "9",
                    "--size", "32"])
    assert loader_clips_per_second(str(shard), 0, 4, 9, 32) > 0
    latents = write_latent_shard(tmp_path, count=4, shape=(8, 3, 4, 4))
    assert loader_clips_per_second(latents, 0, 4, 9, 32, load_pixels=False) > 0
    assert fed_step_clips_per_second(str(shard), 0, 1, 9, 32) > 0
