"""Training-step benchmark of the windowed DiT against factorized and full 3D attention.

Times one training step (forward, backward, AdamW step; random init, batch 1, p = 1, hidden 1152, 16 heads, 4 blocks)
of ``models.WindowedDiT`` against diffusers' ``LatteTransformer3DModel`` (factorized spatial /
temporal attention) and ``CogVideoXTransformer3DModel`` (full 3D attention over all tokens), on
the same latent grids, with the analytic FLOPs of ``benchmarks/flops.py``. Every measurement
runs in its own spawned process (``benchmarks/harness.py``), so peak memory is that process's
own high-water mark (CUDA: ``max_memory_allocated``; CPU: peak RSS growth from just before the
model is built). ``benchmarks/run.py --suite backbone scaling`` runs the same measurements.

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
import os
import platform
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
TEXT_LEN = 16
TEXT_DIM = 64


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


def _flop_name(name: str) -> str:
    return "walt" if name.startswith("walt") else "latte" if name.startswith("latte") else name


def measure_step(name: str, grid: tuple[int, int, int], cfg: dict[str, Any]) -> dict[str, Any]:
    """Build, warm up and time ``reps`` training steps (forward, backward, AdamW step); run it
    in its own process (:func:`measure`), so the peak memory is this model's alone."""
    import torch

    sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
    from flops import backbone_flops
    from harness import MemoryProbe, median, time_runs

    torch.manual_seed(0)
    torch.set_num_threads(cfg["threads"])
    device = torch.device(cfg["device"])
    # Import the libraries before the baseline, so peak memory counts only model + step.
    from diffusers import CogVideoXTransformer3DModel, LatteTransformer3DModel  # noqa: F401

    from models import WindowedDiT  # noqa: F401

    probe = MemoryProbe(device=device).start()
    model, inputs, run = _build(name, grid, cfg["depth"], cfg["hidden"], cfg["heads"])
    model = model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)  # as the configs
    inputs = {k: v.to(device) for k, v in inputs.items()}

    bf16 = cfg.get("precision", "32-true") == "bf16-mixed"

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        # bf16-mixed as Lightning runs it: fp32 weights and optimizer, autocast forward.
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = run(model, **inputs).float().square().mean()
        loss.backward()
        opt.step()

    times = time_runs(step, warmup=cfg["warmup"], reps=cfg["reps"], device=device)
    step_s = median(times)
    tokens = grid[0] * grid[1] * grid[2]
    flops = backbone_flops(
        _flop_name(name),
        grid,
        depth=cfg["depth"] if name != "latte-2x" else 2 * cfg["depth"],
        hidden=cfg["hidden"],
        text_len=TEXT_LEN,
        spatial_window=(16, 16) if name == "walt-sw16" else None,
    )
    return {
        "model": name,
        "precision": "bf16-mixed" if bf16 else "32-true",
        "grid": "x".join(map(str, grid)),
        "tokens": tokens,
        "depth": cfg["depth"],
        "step_s": step_s,
        "tokens_per_s": tokens / step_s,
        "peak_mib": probe.peak_mib(),
        "times": times,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "gflop": flops["total"] / 1e9,
        "attention_share": flops["attention"] / flops["total"],
        "gflops_per_s": flops["total"] / 1e9 / step_s,
    }


def measure(name: str, grid: tuple[int, int, int], cfg: dict[str, Any]) -> dict[str, Any]:
    """One measurement in a fresh spawned process."""
    from harness import isolated

    result = isolated(measure_step, name, grid, cfg)
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
        from common.atomic import atomic_open

        with atomic_open(args.json, "w") as f:
            json.dump({"config": cfg, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
