"""The parts of ``benchmarks/run.py``; each returns ``{"title", "columns", "rows", "notes"}``.

Each part runs in its own process (``harness.isolated``); ``ceilings`` is the result of the
``ceilings`` part, which the others hold their FLOP rates against.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from flops import backbone_flops, conv3d_flops  # noqa: E402
from harness import MemoryProbe, isolated, time_runs  # noqa: E402

Part = dict[str, Any]
Grid = tuple[int, int, int]


def _peak(ceilings: Part | None, key: str) -> float:
    if ceilings is None:
        raise ValueError("ceilings must be measured before the other parts")
    return next(r["gflops_per_s"] for r in ceilings["rows"] if r["kernel"] == key)


def ceilings(*, opts: dict[str, Any], ceilings: Part | None = None) -> Part:
    """Best-of-``reps`` (10) GFLOP/s of large square matmuls (fp32, bf16) and a tokenizer-like
    3x3x3 conv3d (128 -> 128 channels on 9x32x32, as the VAE's full-resolution levels)."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(opts["threads"])
    device, quick = opts["device"], opts["quick"]
    # Best of 10 after 3 warm-ups: on a 2-core VM, best-of-3 of the 2048 fp32 matmul read
    # 139 to 177 GFLOP/s from run to run where best-of-10 reads ~187, and an underestimated
    # peak inflates every MFU held against it.
    n, reps, warmup = (128, 2, 1) if quick else (2048, 10, 3)
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
        best = min(time_runs(lambda a=a, b=b: a @ b, warmup=warmup, reps=reps, device=device))
        rows.append({"kernel": f"matmul {str(dtype)[6:]}", "shape": f"{n}x{n} @ {n}x{n}",
                     "gflops_per_s": 2 * n**3 / best / 1e9})
    c, (t, h, w) = (16, (3, 8, 8)) if quick else (128, (9, 32, 32))
    x = torch.randn(1, c, t, h, w, device=device)  # (B, C, T, H, W)
    weight = torch.randn(c, c, 3, 3, 3, device=device)
    with torch.no_grad():
        best = min(time_runs(lambda: F.conv3d(x, weight, padding=1), warmup=warmup,
                             reps=reps, device=device))
    flop = conv3d_flops(in_channels=c, out_channels=c, kernel=(3, 3, 3), out_voxels=t * h * w)
    rows.append({"kernel": "conv3d fp32", "shape": f"{c}->{c}, 3x3x3 on {t}x{h}x{w}",
                 "gflops_per_s": flop / best / 1e9})
    return {"title": f"Ceilings ({device}, best of {reps})", "rows": rows,
            "columns": [("kernel", "kernel", ""), ("shape", "shape", ""),
                        ("gflops_per_s", "GFLOP/s", ".1f")]}


def _backbone_plan(quick: bool, device: str) -> tuple[dict[str, Any], list]:
    """(model config, [(grid, its overrides, models)]) of the backbone part."""
    bf16 = {"precision": "bf16-mixed"}  # the training configs' precision (autocast)
    if quick:
        cfg = {"hidden": 64, "heads": 4, "warmup": 0, "reps": 1}
        return cfg, [((2, 4, 8), {"depth": 2}, ["walt", "walt-sw16", "latte", "cogvideox"]),
                     ((2, 4, 8), {"depth": 2, **bf16}, ["walt-sw16", "latte"])]
    cfg = {"hidden": 1152, "heads": 16, "warmup": 1, "reps": 3}
    if device == "cpu":
        # A 4-block step at 8,960 tokens takes minutes on a 2-core CPU: 2 blocks (one S, one
        # ST), one timed step after one warm-up step. At 35,840 tokens only the comparison the
        # windows are for: W.A.L.T's 1x16x16 + 5x8x8 windows against Latte's whole frames
        # (whole-frame walt and CogVideoX's full attention are 1.5x and 6x its FLOPs there).
        models = ["walt", "walt-sw16", "latte", "cogvideox"]
        return {**cfg, "warmup": 1, "reps": 1}, [
            ((5, 32, 56), {"depth": 2}, models),
            ((5, 64, 112), {"depth": 2}, ["walt-sw16", "latte"]),
            ((5, 32, 56), {"depth": 2, **bf16}, models)]
    models = ["walt", "walt-sw16", "latte", "cogvideox"]
    return cfg, [((5, 32, 56), {"depth": 4}, models), ((5, 64, 112), {"depth": 2}, models),
                 ((5, 32, 56), {"depth": 4, **bf16}, models)]


def _backbone_rows(results: list[dict[str, Any]], peaks: dict[str, float]) -> list[dict[str, Any]]:
    """Rows with the walt ratio (within one grid and precision) and MFU against the matmul peak
    of the row's precision (``peaks``: ``32-true`` and ``bf16-mixed``)."""
    by_grid: dict[tuple[str, str], dict[str, Any]] = {}
    for r in results:
        by_grid.setdefault((r["grid"], r.get("precision", "32-true")), {})[r["model"]] = r
    rows = []
    for r in results:
        precision = r.get("precision", "32-true")
        # The grid's walt row: whole-frame S windows where timed, else the 1x16x16 one.
        same = by_grid[(r["grid"], precision)]
        walt = same.get("walt") or same.get("walt-sw16")
        rows.append({**r, "precision": precision, "mfu": r["gflops_per_s"] / peaks[precision],
                     "fp32_peak_ratio": r["gflops_per_s"] / peaks["32-true"],
                     "walt_ratio": walt["tokens_per_s"] / r["tokens_per_s"] if walt else None})
    return rows


def backbone(*, opts: dict[str, Any], ceilings: Part | None = None) -> Part:
    from bench_backbone import measure_step

    cfg, plan = _backbone_plan(opts["quick"], opts["device"])
    results = []
    for grid, overrides, models in plan:
        run_cfg = {**cfg, **overrides, "device": opts["device"], "threads": opts["threads"]}
        for m in models:
            results.append(isolated(measure_step, m, grid, run_cfg))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)  # progress
    rows = _backbone_rows(results, {"32-true": _peak(ceilings, "matmul float32"),
                                    "bf16-mixed": _peak(ceilings, "matmul bfloat16")})
    columns = [("grid", "grid", ""), ("tokens", "tokens", ""), ("depth", "blocks", ""),
               ("precision", "precision", ""), ("model", "model", ""),
               ("params_m", "params M", ".1f"),
               ("step_s", "step s", ".2f"), ("tokens_per_s", "tokens/s", ".0f"),
               ("peak_mib", "peak MiB", ".0f"), ("walt_ratio", "walt tokens/s ÷ model's", ".2f"),
               ("gflop", "model GFLOP/step", ".0f"), ("attention_share", "attention share", ".2f"),
               ("gflops_per_s", "GFLOP/s", ".1f"), ("mfu", "MFU (its precision's peak)", ".2f"),
               ("fp32_peak_ratio", "GFLOP/s ÷ fp32 peak", ".2f")]
    notes = ["walt: S blocks on whole frames; walt-sw16: 1x16x16 S windows (W.A.L.T App. A); "
             "both with 5x8x8 ST windows. Step = forward + backward + AdamW, batch 1; 32-true in "
             "fp32, bf16-mixed with fp32 weights and optimizer and a bf16 autocast forward (as "
             "Lightning runs it). MFU = analytic model FLOPs (benchmarks/flops.py) / step time "
             "/ the matmul peak of the row's precision; the ratio column is within one grid and "
             "precision."]
    if not opts["quick"] and opts["device"] == "cpu":
        variants = (("walt", "walt", None), ("walt-sw16", "walt", (16, 16)),
                    ("latte", "latte", None), ("cogvideox", "cogvideox", None))
        big = [(name, backbone_flops(m, (5, 64, 112), depth=2, hidden=cfg["hidden"],
                                     spatial_window=w)) for name, m, w in variants]
        tflop = ", ".join(f"{name} {f['total'] / 1e12:.1f}" for name, f in big)
        notes.append("On CPU: 2 blocks (S, ST; Latte 1 spatial + 1 temporal), one warm-up and "
                     "one timed step. At 5x64x112 (35,840 tokens) a 2-block step is, in TFLOP, "
                     f"{tflop}; only walt-sw16 and Latte are timed there, and the ratio "
                     "column holds walt-sw16's tokens/s against each model's.")
    return {"title": f"Backbone training step (hidden {cfg['hidden']}, {cfg['heads']} heads)",
            "rows": rows, "columns": columns, "notes": notes}


def scaling(*, opts: dict[str, Any], ceilings: Part | None = None) -> Part:
    """Windowed (walt, 1x16x16 + 5x8x8) against full attention (CogVideoX), all in this
    process (only step time is reported, not memory)."""
    from bench_backbone import measure_step

    if opts["quick"]:
        cfg, grids = {"hidden": 32, "heads": 2, "depth": 2, "warmup": 0, "reps": 1}, [
            (2, 4, 4), (2, 4, 8)]
    else:
        cfg = {"hidden": 384, "heads": 6, "depth": 2, "warmup": 1, "reps": 1}  # small depth
        grids = [(5, 8, 8), (5, 16, 16), (5, 16, 32), (5, 32, 32)]
    cfg = {**cfg, "device": opts["device"], "threads": opts["threads"]}
    fp32_peak = _peak(ceilings, "matmul float32")
    rows = []
    for grid in grids:
        win, full = (measure_step(m, grid, cfg) for m in ("walt-sw16", "cogvideox"))
        rows.append({"grid": win["grid"], "tokens": win["tokens"], "windowed_s": win["step_s"],
                     "windowed_s_per_1k": 1e3 * win["step_s"] / win["tokens"],
                     "full_s": full["step_s"], "full_s_per_1k": 1e3 * full["step_s"] / full["tokens"],
                     "full_over_windowed_ratio": full["step_s"] / win["step_s"],
                     "windowed_mfu": win["gflops_per_s"] / fp32_peak,
                     "full_mfu": full["gflops_per_s"] / fp32_peak})
    columns = [("grid", "grid", ""), ("tokens", "tokens", ""),
               ("windowed_s", "windowed step s", ".2f"),
               ("windowed_s_per_1k", "windowed s / 1k tokens", ".3f"),
               ("full_s", "full step s", ".2f"), ("full_s_per_1k", "full s / 1k tokens", ".3f"),
               ("full_over_windowed_ratio", "full ÷ windowed", ".2f"),
               ("windowed_mfu", "windowed MFU", ".2f"), ("full_mfu", "full MFU", ".2f")]
    return {"title": f"Scaling: step time vs tokens (hidden {cfg['hidden']}, {cfg['depth']} "
            "blocks)", "rows": rows, "columns": columns, "notes": []}


def _codec_row(model: str, frames: int, size: int, preset: str, device: str) -> dict[str, Any]:
    from bench_tokenizer import count_flops, measure_codec

    row = measure_codec(model=model, frames=frames, size=size, preset=preset, device=device)
    row["encode_gflop"], row["decode_gflop"] = count_flops(model, preset, frames, size)
    return row


def tokenizer(*, opts: dict[str, Any], ceilings: Part | None = None) -> Part:
    quick = opts["quick"]
    # 32x32 so that 129 frames finish on a CPU; 17x128x128 is the paper's tokenizer clip.
    clips, preset = ([(5, 16), (9, 16)], "tiny") if quick else ([(17, 32), (129, 32), (17, 128)],
                                                                 "walt")
    conv_peak = _peak(ceilings, "conv3d fp32")
    rows = []
    for frames, size in clips:
        for model in ("walt", "wan", "cogvideox"):
            r = isolated(_codec_row, model, frames, size, preset, opts["device"])
            r.update(encode_ms_per_frame=1e3 * r["encode_s"] / frames,
                     decode_ms_per_frame=1e3 * r["decode_s"] / frames,
                     encode_conv_peak_ratio=r["encode_gflop"] / r["encode_s"] / conv_peak,
                     decode_conv_peak_ratio=r["decode_gflop"] / r["decode_s"] / conv_peak)
            rows.append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)  # progress
    for r in rows:
        walt = next(w for w in rows if w["model"] == "walt" and w["frames"] == r["frames"]
                    and w["size"] == r["size"])
        r["walt_speed_ratio"] = ((r["encode_s"] + r["decode_s"])
                                 / (walt["encode_s"] + walt["decode_s"]))
    columns = [("model", "model", ""), ("frames", "frames", ""), ("size", "size", ""),
               ("params_M", "params M", ".1f"),
               ("encode_ms_per_frame", "encode ms/frame", ".0f"),
               ("decode_ms_per_frame", "decode ms/frame", ".0f"),
               ("peak_mem_MiB", "peak MiB", ".0f"),
               ("walt_speed_ratio", "model's (enc+dec) s ÷ walt's", ".2f"),
               ("encode_conv_peak_ratio", "encode ÷ conv3d peak", ".2f"),
               ("decode_conv_peak_ratio", "decode ÷ conv3d peak", ".2f")]
    notes = [f"Random init, batch 1, fp32, no_grad, one repetition; walt preset `{preset}`. "
             "FLOPs counted on the meta device (torch.utils.flop_counter)."]
    if not quick:
        notes.append("32x32 so that 129 frames finish on a CPU; 17x128x128 is W.A.L.T's "
                     "tokenizer clip.")
    return {"title": "Tokenizer encode / decode", "rows": rows, "columns": columns,
            "notes": notes}


def loader(*, opts: dict[str, Any], ceilings: Part | None = None) -> Part:
    import tempfile

    from bench_loader import (
        REAL,
        fed_step_clips_per_second,
        loader_clips_per_second,
        tiny_latent_shape,
        tiny_step_seconds,
        write_latent_shard,
        write_reencoded_shard,
        write_shard,
    )

    quick = opts["quick"]
    probe = MemoryProbe(device="cpu").start()
    step_s, batch = tiny_step_seconds(reps=1 if quick else 3)
    rows = [{"path": "tiny model training step alone (latents in memory)",
             "clips_per_s": batch / step_s}]
    notes = []
    clips, steps = (16, 1) if quick else (512, 16)
    with tempfile.TemporaryDirectory() as folder:
        latents = write_latent_shard(Path(folder), count=min(clips, 256),
                                     shape=tiny_latent_shape())
        rows.append({"path": "loader, latent shards (walt.precompute), num_workers=0",
                     "clips_per_s": loader_clips_per_second(latents, 0, clips, 17, 32,
                                                            load_pixels=False)})
        paths = sorted(p for p in REAL.glob("*") if p.suffix in (".mp4", ".webm"))
        if paths:
            small = write_reencoded_shard(paths, Path(folder), size=32, fps=8.0)
            for workers in (0, 2):
                rows.append({"path": f"loader, re-encoded shards 17x32x32, num_workers={workers}",
                             "clips_per_s": loader_clips_per_second(small, workers, clips, 17, 32)})
            encode_s, _ = tiny_step_seconds(reps=1 if quick else 3, encode=True)
            rows.append({"path": "tiny step with tokenizer encode, pixels in memory",
                         "clips_per_s": batch / encode_s})
            for workers in (0, 2):
                rows.append({"path": "tiny step with tokenizer encode, fed by the loader from "
                             f"re-encoded shards, num_workers={workers}",
                             "clips_per_s": fed_step_clips_per_second(small, workers, steps, 17,
                                                                      32)})
            size = 32 if quick else 256
            rows.append({"path": f"loader, real videos, 17x{size}x{size}, num_workers=0",
                         "clips_per_s": loader_clips_per_second(write_shard(paths, Path(folder)),
                                                                0, 4 if quick else 16, 17, size)})
        else:
            notes.append(f"video loaders not measured: no real videos at {REAL}")
    for r in rows:
        r["ratio_to_step"] = r["clips_per_s"] / rows[0]["clips_per_s"]
    notes.append(f"Tiny step: configs/walt/tiny_cpu.yaml's backbone on its batch of {batch} "
                 "latent clips. Re-encoded shards: the real videos through `make_shards "
                 "--reencode` at 32x32, 8 fps (the tiny configs' size). Training from video "
                 "shards encodes every batch with the tokenizer (`tiny` preset here) before the "
                 "backbone step; the fed rows run that step on each loader batch of its batch "
                 "size, loader workers and step sharing the CPU, against the same step on pixels "
                 f"in memory. Part peak RSS +{probe.peak_mib():.0f} MiB.")
    return {"title": "Data loader against the tiny model's step", "rows": rows, "notes": notes,
            "columns": [("path", "path", ""), ("clips_per_s", "clips/s", ".2f"),
                        ("ratio_to_step", "÷ tiny step's clips/s", ".2f")]}


def sampling(*, opts: dict[str, Any], ceilings: Part | None = None) -> Part:
    from bench_generation import SAMPLERS, speed

    quick = opts["quick"]
    samplers = (("ddim", 5), ("dpmpp_2m", 2)) if quick else SAMPLERS
    frames, size = (5, 16) if quick else (17, 32)
    rows = speed(frames, size, 1, self_conds=(True,), guidances=(1.0,), samplers=samplers)
    for r in rows:
        r["ratio_to_first"] = r.pop("ratio")
    return {"title": f"Sampling: seconds per clip (tiny model, {frames}x{size}x{size})", "rows": rows,
            "notes": ["Random-weight tiny WindowedDiT and CausalVAE, self-conditioning on, "
                      "guidance 1, one repetition."],
            "columns": [("sampler", "sampler", ""), ("steps", "steps", ""),
                        ("s_per_clip", "s per clip", ".2f"),
                        ("ratio_to_first", "÷ first row", ".2f")]}


def precision(*, opts: dict[str, Any], ceilings: Part | None = None) -> Part:
    from bench_precision import COLUMNS, measure

    rows = measure(2 if opts["quick"] else 10)
    return {"title": "Tiny CPU configs: training step in fp32 and bf16 autocast", "rows": rows,
            "columns": COLUMNS,
            "notes": ["Random weights and inputs of the tiny configs' shapes; medians of "
                      "interleaved fp32 / bf16 passes. The configs train in `bf16-mixed`."]}


PARTS = {
    f.__name__: f for f in (ceilings, backbone, scaling, tokenizer, loader, sampling, precision)
}
