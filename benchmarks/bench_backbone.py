"""Training-step benchmark of the windowed DiT against factorized and full 3D attention.

Times one forward + backward step (random init, batch 1, p = 1, hidden 1152, 16 heads, 4 blocks)
of ``models.WindowedDiT`` against diffusers' ``LatteTransformer3DModel`` (factorized spatial /
temporal attention) and ``CogVideoXTransformer3DModel`` (full 3D attention over all tokens), on
the same latent grids. Every measurement runs in its own spawned process, so peak memory is that
process's own high-water mark (CUDA: ``max_memory_allocated``; CPU: peak RSS growth from just
before the model is built).

Usage::

    .venv/bin/python benchmarks/bench_backbone.py                      # CPU, default grids
    .venv/bin/python benchmarks/bench_backbone.py --device cuda --reps 5
    .venv/bin/python benchmarks/bench_backbone.py --grids 5x16x16 --scaling-grids ""  # quick

Depth parity: a WindowedDiT / CogVideoX "block" is one transformer block; Latte's ``num_layers``
counts spatial + temporal *pairs*, so Latte gets ``num_layers = depth / 2`` (the same number of
transformer blocks, as in the original Latte's depth convention). ``--latte-pairs-per-block``
also times Latte with ``num_layers = depth`` (diffusers' convention, twice the blocks).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TEXT_LEN = 16
TEXT_DIM = 64


def _rss_mb(field: str) -> float:
    """``VmRSS`` / ``VmHWM`` of this process in MiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"{field} not found in /proc/self/status")


def _build(name: str, grid: tuple[int, int, int], depth: int, hidden: int, heads: int):
    """Returns ``(model, inputs, run)``; ``run(model, **inputs)`` is the forward pass."""
    import torch

    t, h, w = grid
    inputs = {
        "x": torch.randn(1, 8, t, h, w),  # (B, c, t, h, w)
        "steps": torch.tensor([500.0]),
        "text": torch.randn(1, TEXT_LEN, TEXT_DIM),  # (B, L, E)
        "label": torch.tensor([3]),
    }
    if name.startswith("walt"):
        from models import WindowedDiT

        use_text = name == "walt-text"
        model = WindowedDiT(
            hidden_size=hidden,
            depth=depth,
            num_heads=heads,
            max_latent_size=grid,
            num_classes=0 if use_text else 101,
            text_dim=TEXT_DIM if use_text else 0,
            spatial_window=(16, 16) if name == "walt-sw16" else None,
        )

        def run(m, x, steps, text, label):
            if use_text:
                return m(x, steps, text_emb=text)
            return m(x, steps, class_labels=label)
    elif name.startswith("latte"):
        from diffusers import LatteTransformer3DModel

        model = LatteTransformer3DModel(
            num_attention_heads=heads,
            attention_head_dim=hidden // heads,
            in_channels=8,
            out_channels=8,
            num_layers=depth if name == "latte-2x" else depth // 2,
            cross_attention_dim=hidden,
            sample_size=h,
            patch_size=1,
            activation_fn="gelu-approximate",
            norm_type="ada_norm_single",
            num_embeds_ada_norm=1000,
            norm_elementwise_affine=False,
            norm_eps=1e-6,
            caption_channels=TEXT_DIM,
            video_length=t,
        )

        def run(m, x, steps, text, label):
            return m(x, timestep=steps.long(), encoder_hidden_states=text).sample
    elif name == "cogvideox":
        from diffusers import CogVideoXTransformer3DModel

        model = CogVideoXTransformer3DModel(
            num_attention_heads=heads,
            attention_head_dim=hidden // heads,
            in_channels=8,
            out_channels=8,
            text_embed_dim=TEXT_DIM,
            num_layers=depth,
            sample_width=w,
            sample_height=h,
            sample_frames=4 * (t - 1) + 1,
            patch_size=1,
            max_text_seq_length=TEXT_LEN,
        )
        inputs["x"] = inputs["x"].transpose(1, 2).contiguous()  # CogVideoX wants (B, t, c, h, w)

        def run(m, x, steps, text, label):
            return m(x, encoder_hidden_states=text, timestep=steps.long()).sample
    else:
        raise ValueError(f"unknown benchmark model {name!r}")
    return model, inputs, run


def _measure(name: str, grid: tuple[int, int, int], cfg: dict[str, Any], queue: mp.Queue) -> None:
    """Child process: build, warm up, time ``reps`` steps, report through ``queue``."""
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(cfg["threads"])
    device = torch.device(cfg["device"])
    # Import the libraries before the baseline, so peak memory counts only model + step.
    sys.path.insert(0, str(ROOT))
    from diffusers import CogVideoXTransformer3DModel, LatteTransformer3DModel  # noqa: F401

    from models import WindowedDiT  # noqa: F401

    rss0 = _rss_mb("VmRSS")
    model, inputs, run = _build(name, grid, cfg["depth"], cfg["hidden"], cfg["heads"])
    model = model.to(device).train()
    inputs = {k: v.to(device) for k, v in inputs.items()}

    def step() -> None:
        model.zero_grad(set_to_none=True)
        run(model, **inputs).float().square().mean().backward()
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(cfg["warmup"]):
        step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(cfg["reps"]):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = _rss_mb("VmHWM") - rss0
    step_s = statistics.median(times)
    tokens = grid[0] * grid[1] * grid[2]
    queue.put(
        {
            "model": name,
            "grid": "x".join(map(str, grid)),
            "tokens": tokens,
            "step_s": step_s,
            "tokens_per_s": tokens / step_s,
            "peak_mib": peak,
            "times": times,
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        }
    )


def measure(name: str, grid: tuple[int, int, int], cfg: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in a fresh spawned process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(name, grid, cfg, queue))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"benchmark of {name} on {grid} failed (exit code {proc.exitcode})")
    result = queue.get()
    print(json.dumps(result), flush=True)
    return result


def _grid(text: str) -> tuple[int, int, int]:
    parts = tuple(int(v) for v in text.lower().split("x"))
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"grid must be TxHxW, got {text!r}")
    return parts  # type: ignore[return-value]


def _grids(text: str) -> list[tuple[int, int, int]]:
    return [_grid(g) for g in text.split(",") if g.strip()]


def _table(results: list[dict[str, Any]], grids, models) -> str:
    rows = [
        "| grid (tokens) | model | step s | tokens/s | peak MiB | walt tokens/s ÷ model's |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for grid in grids:
        key = "x".join(map(str, grid))
        by_model = {r["model"]: r for r in results if r["grid"] == key}
        ref = by_model.get("walt")
        for name in models:
            r = by_model.get(name)
            if r is None:
                continue
            ratio = f"{ref['tokens_per_s'] / r['tokens_per_s']:.2f}x" if ref else "n/a"
            rows.append(
                f"| {key} ({r['tokens']}) | {name} | {r['step_s']:.2f} | "
                f"{r['tokens_per_s']:.0f} | {r['peak_mib']:.0f} | {ratio} |"
            )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--grids", type=_grids, default=_grids("5x16x16,5x32x56"))
    parser.add_argument(
        "--scaling-grids",
        type=_grids,
        default=_grids("5x16x32,5x32x32"),
        help="extra grids for the scaling table (walt, walt-sw16, cogvideox)",
    )
    parser.add_argument(
        "--models",
        default="walt,latte,cogvideox",
        help="comma-separated models for the step comparison (walt, walt-sw16, walt-text, latte, "
        "latte-2x, cogvideox)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=1152)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument(
        "--with-text", action="store_true", help="also time walt with text cross-attention"
    )
    parser.add_argument(
        "--latte-pairs-per-block",
        action="store_true",
        help="also time Latte with num_layers = depth (2x the blocks)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write all results here")
    args = parser.parse_args()
    cfg = {
        k: getattr(args, k)
        for k in ("device", "threads", "depth", "hidden", "heads", "warmup", "reps")
    }
    print(
        f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"threads={args.threads}, device={args.device}; config {cfg}",
        flush=True,
    )

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    models += ["walt-text"] if args.with_text else []
    models += ["latte-2x"] if args.latte_pairs_per_block else []
    results = [measure(m, g, cfg) for g in args.grids for m in models]
    scaling_models = ["walt", "walt-sw16", "cogvideox"]
    all_grids = sorted(set(args.grids) | set(args.scaling_grids), key=lambda g: g[0] * g[1] * g[2])
    if args.scaling_grids:
        done = {(r["model"], r["grid"]) for r in results}
        for g in all_grids:
            for m in scaling_models:
                if (m, "x".join(map(str, g))) not in done:
                    results.append(measure(m, g, cfg))
    print("\n## Step comparison\n\n" + _table(results, args.grids, models))
    if args.scaling_grids:
        print(
            "\n## Scaling (step seconds vs tokens)\n\n" + _table(results, all_grids, scaling_models)
        )
    if args.json is not None:
        args.json.write_text(json.dumps({"config": cfg, "results": results}, indent=2))


if __name__ == "__main__":
    main()
