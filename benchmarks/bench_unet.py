"""Training-step benchmark of the U-Net baselines against the windowed DiT at equal size.

Times full training steps (forward + backward + AdamW step, loss = mean square of the output,
class-conditional, self-cond and frame-cond inputs) of ``models.SpaceTimeUnet`` (Make-A-Video)
and ``models.Unet3D`` (Video Diffusion Models) against ``models.WindowedDiT`` on two settings:

- ``pixel``: 17x64x64 RGB frames (VDM's space; the DiT uses 4x4 patches, 16x16 tokens a frame);
- ``latent``: a 5x8x8 grid of 8-channel latents (the DiT uses 1x1 patches).

The DiT is built first; each U-Net's base width ``dim`` is then the candidate whose parameter
count is closest to the DiT's, so the comparison is at about the same size. Every measurement
runs in its own spawned process: peak memory is that process's high-water mark (CUDA:
``max_memory_allocated``; CPU: peak RSS growth from just before the model is built). The table
gives samples/s and peak memory, and both as ratios to the DiT of the same setting.

Usage::

    .venv/bin/python benchmarks/bench_unet.py --threads 2                  # CPU, small sizes
    .venv/bin/python benchmarks/bench_unet.py --device cuda --hidden 384 --depth 8 --reps 5
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
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]
from harness import MemoryProbe, isolated, median, time_runs  # noqa: E402

SETTINGS = {  # name: (channels, (T, H, W), DiT patch size, U-Net dim_mult, U-Net attention levels)
    "pixel": (3, (17, 64, 64), 4, (1, 2, 4, 4), (False, False, True, True)),
    "latent": (8, (5, 8, 8), 1, (1, 2, 2), (False, True, True)),
}
MODELS = ("walt", "space_time_unet", "unet3d")
DIMS = (8, 16, 24, 32, 40, 48, 64, 80, 96, 128, 160, 192, 256)


def _dit(setting: str, cfg: dict[str, Any]):
    from models import WindowedDiT

    c, (t, h, w), p, _, _ = SETTINGS[setting]
    return WindowedDiT(in_channels=c, patch_size=p, hidden_size=cfg["hidden"], depth=cfg["depth"],
                       num_heads=cfg["heads"], num_classes=101, max_latent_size=(t, h, w),
                       spatiotemporal_window=(min(t, 5), 8, 8))


def _unet(name: str, setting: str, dim: int):
    from models import SpaceTimeUnet, Unet3D

    c, (t, _, _), _, mult, attn = SETTINGS[setting]
    cls = SpaceTimeUnet if name == "space_time_unet" else Unet3D
    return cls(in_channels=c, dim=dim, dim_mult=mult, num_res_blocks=2, attn_levels=attn,
               attn_head_dim=8, groups=8, max_frames=t, num_classes=101)


def _build(name: str, setting: str, cfg: dict[str, Any]):
    """The model; a U-Net's ``dim`` is the one whose size is closest to the DiT's."""
    if name == "walt":
        return _dit(setting, cfg)
    target = sum(p.numel() for p in _dit(setting, cfg).parameters())

    def gap(dim: int) -> int:
        return abs(sum(p.numel() for p in _unet(name, setting, dim).parameters()) - target)

    return _unet(name, setting, min(DIMS, key=gap))


def measure_step(name: str, setting: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Build, warm up and time ``reps`` training steps; run in its own process (:func:`measure`)."""
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(cfg["threads"])
    import models  # noqa: F401 - imported before the memory baseline

    device = torch.device(cfg["device"])
    probe = MemoryProbe(device=device).start()
    model = _build(name, setting, cfg).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)  # as the configs
    c, (t, h, w), *_ = SETTINGS[setting]
    b = cfg["batch"][setting]
    x = torch.randn(b, c, t, h, w, device=device)  # (B, c, T, H, W)
    kw = dict(class_labels=torch.arange(b, device=device) % 101,
              self_cond=torch.randn_like(x), frame_cond=torch.randn(b, c + 1, t, h, w, device=device))
    steps = torch.full((b,), 500.0, device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        model(x, steps, **kw).square().mean().backward()
        opt.step()

    times = time_runs(step, warmup=cfg["warmup"], reps=cfg["reps"], device=device)
    step_s = median(times)
    return {"model": name, "setting": setting, "batch": b, "step_s": step_s,
            "samples_per_s": b / step_s, "peak_mib": probe.peak_mib(), "times": times,
            "dim": None if name == "walt" else model.init_conv.spatial.out_channels,
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6}


def measure(name: str, setting: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in a fresh spawned process."""
    result = isolated(measure_step, name, setting, cfg)
    print(json.dumps(result), flush=True)
    return result


def table(results: list[dict[str, Any]]) -> str:
    rows = ["| setting | model | params M | U-Net dim | batch | step s | samples/s | peak MiB | "
            "samples/s ÷ walt's | peak ÷ walt's |", "| --- " * 10 + "|"]
    for setting in SETTINGS:
        by_model = {r["model"]: r for r in results if r["setting"] == setting}
        ref = by_model.get("walt")
        for r in (by_model[m] for m in MODELS if m in by_model):
            speed = f"{r['samples_per_s'] / ref['samples_per_s']:.2f}" if ref else "n/a"
            mem = f"{r['peak_mib'] / max(ref['peak_mib'], 1e-9):.2f}" if ref else "n/a"
            rows.append(f"| {setting} | {r['model']} | {r['params_m']:.2f} | {r['dim'] or '-'} | "
                        f"{r['batch']} | {r['step_s']:.3f} | {r['samples_per_s']:.2f} | "
                        f"{r['peak_mib']:.0f} | {speed} | {mem} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--settings", default="pixel,latent", help="comma-separated: pixel, latent")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--hidden", type=int, default=128, help="DiT width")
    parser.add_argument("--depth", type=int, default=4, help="DiT blocks")
    parser.add_argument("--heads", type=int, default=4, help="DiT heads")
    parser.add_argument("--pixel-batch", type=int, default=1)
    parser.add_argument("--latent-batch", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="write all results here")
    args = parser.parse_args()
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        parser.error(f"--settings: unknown {unknown}; choose from {sorted(SETTINGS)}")
    cfg = {k: getattr(args, k) for k in ("device", "threads", "hidden", "depth", "heads",
                                          "warmup", "reps")}
    cfg["batch"] = {"pixel": args.pixel_batch, "latent": args.latent_batch}
    print(f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"threads={args.threads}, device={args.device}; config {cfg}", flush=True)
    results = [measure(m, s, cfg) for s in settings for m in MODELS]
    print("\n" + table(results))
    if args.json is not None:
        from common.atomic import atomic_open

        with atomic_open(args.json, "w") as f:
            json.dump({"config": cfg, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
