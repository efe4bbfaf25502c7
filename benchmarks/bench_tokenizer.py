"""Tokenizer benchmark: the ``walt`` CausalVAE against diffusers' Wan and CogVideoX VAEs.

    python benchmarks/bench_tokenizer.py [--frames 17 65] [--size 128] [--models walt wan cogvideox]
        [--json OUT.json]
    python benchmarks/bench_tokenizer.py --memory-promise [--preset walt] [--size 64]

Every measurement runs in a fresh subprocess (random init, nothing downloaded) under
``torch.no_grad()``, one repetition, batch 1: parameters, encode seconds, decode seconds, and
peak memory = peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) minus the RSS after the
model and the input exist (``harness.MemoryProbe``). On CPU this is the honest, allocator-independent measure; on CUDA
the script reports ``torch.cuda.max_memory_allocated`` instead.

``--flops`` counts encode and decode FLOPs of each model on the meta device
(``torch.utils.flop_counter``; nothing is computed), to tell architecture cost from kernel speed.

``--memory-promise`` decodes 17 and 129 frames (same resolution) with the streaming decoder and
prints the peak-memory ratio (the promise: <= 1.25).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
from harness import MemoryProbe, time_runs  # noqa: E402


def build(name: str, preset: str):
    """(model, encode(x) -> z, decode(z) -> x) for a model name."""
    if name == "walt":
        from tokenizer import CausalVAE

        vae = CausalVAE.from_preset(preset).eval()
        return vae, vae.encode, vae.decode
    if name == "wan":
        from diffusers import AutoencoderKLWan

        vae = AutoencoderKLWan().eval()
        return vae, lambda x: vae.encode(x).latent_dist.mode(), lambda z: vae.decode(z).sample
    if name == "cogvideox":
        from diffusers import AutoencoderKLCogVideoX

        vae = AutoencoderKLCogVideoX().eval()
        return vae, lambda x: vae.encode(x).latent_dist.mode(), lambda z: vae.decode(z).sample
    raise ValueError(f"unknown model {name!r}; choose walt, wan or cogvideox")


def measure_codec(*, model: str, frames: int, size: int, preset: str = "walt",
                  device: str = "cpu", decode_only: bool = False) -> dict:
    """Encode then decode one clip (or decode only); run it in a fresh process."""
    torch.manual_seed(0)
    net, encode, decode = build(model, preset)
    net.to(device)
    x = torch.rand(1, 3, frames, size, size, device=device) * 2 - 1
    row = {"model": model, "frames": frames, "size": size, "device": device}
    row["params_M"] = sum(p.numel() for p in net.parameters()) / 1e6
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        if decode_only:
            out["z"] = torch.randn(1, 8, 1 + (frames - 1) // 4, size // 8, size // 8, device=device)
        probe = MemoryProbe(device=device).start()
        if not decode_only:
            (row["encode_s"],) = time_runs(lambda: out.update(z=encode(x)), warmup=0, reps=1,
                                           device=device)
        (row["decode_s"],) = time_runs(lambda: out.update(y=decode(out["z"])), warmup=0, reps=1,
                                       device=device)
        row.update(latent=list(out["z"].shape), out=list(out["y"].shape))
    row["peak_mem_MiB"] = probe.peak_mib()
    return row


def worker(args: argparse.Namespace) -> None:
    """One measurement in this process; prints one JSON line."""
    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    row = measure_codec(model=args.model, frames=args.frames, size=args.size, preset=args.preset,
                        device=device, decode_only=args.decode_only)
    print(json.dumps(row), flush=True)


def count_flops(name: str, preset: str, frames: int, size: int) -> tuple[float, float]:
    """(encode GFLOP, decode GFLOP) of one clip, counted on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"), torch.no_grad():
        _, encode, decode = build(name, preset)
        counter = FlopCounterMode(display=False)
        with counter:
            z = encode(torch.empty(1, 3, frames, size, size))
        enc = counter.get_total_flops()
        counter = FlopCounterMode(display=False)
        with counter:
            decode(z)
    return enc / 1e9, counter.get_total_flops() / 1e9


def run_worker(extra: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--worker", *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"worker {extra} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, nargs="+", default=[17, 65])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--models", nargs="+", default=["walt", "wan", "cogvideox"])
    parser.add_argument("--preset", default="walt", help="CausalVAE preset for the walt model")
    parser.add_argument("--cpu", action="store_true", help="force CPU even if CUDA is available")
    parser.add_argument("--json", default=None, help="append result rows to this JSON-lines file")
    parser.add_argument("--memory-promise", action="store_true")
    parser.add_argument("--flops", action="store_true", help="count FLOPs (meta device) instead")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="walt", help=argparse.SUPPRESS)
    parser.add_argument("--decode-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.frames = args.frames[0]
        worker(args)
        return
    if args.flops:
        for frames in args.frames:
            for model in args.models:
                enc, dec = count_flops(model, args.preset, frames, args.size)
                print(
                    f"{model:10s} {frames:3d}x{args.size}x{args.size}: encode {enc:.0f} GFLOP  "
                    f"decode {dec:.0f} GFLOP"
                )
        return
    common = ["--size", str(args.size), "--preset", args.preset] + (["--cpu"] if args.cpu else [])
    if args.memory_promise:
        rows = [
            run_worker(["--model", "walt", "--decode-only", "--frames", str(f), *common])
            for f in (17, 129)
        ]
        for r in rows:
            print(
                f"decode {r['frames']:4d} frames: peak +{r['peak_mem_MiB']:.0f} MiB, {r['decode_s']:.1f} s"
            )
        print(
            f"ratio 129/17 = {rows[1]['peak_mem_MiB'] / rows[0]['peak_mem_MiB']:.3f} (promise <= 1.25)"
        )
        return
    rows = []
    for frames in args.frames:
        for model in args.models:
            r = run_worker(["--model", model, "--frames", str(frames), *common])
            rows.append(r)
            print(
                f"{model:10s} {frames:3d}x{args.size}x{args.size}: {r['params_M']:.1f}M params  "
                f"encode {r['encode_s']:.1f}s  decode {r['decode_s']:.1f}s  "
                f"peak +{r['peak_mem_MiB']:.0f} MiB",
                flush=True,
            )
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps(r) + "\n")
    for frames in args.frames:
        by = {r["model"]: r for r in rows if r["frames"] == frames}
        if "walt" not in by:
            continue
        w = by["walt"]
        for other, r in by.items():
            if other != "walt":
                print(
                    f"{frames} frames, {other}/walt: encode {r['encode_s'] / w['encode_s']:.2f}x  "
                    f"decode {r['decode_s'] / w['decode_s']:.2f}x  memory {r['peak_mem_MiB'] / w['peak_mem_MiB']:.2f}x"
                )


if __name__ == "__main__":
    main()
