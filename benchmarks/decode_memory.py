"""Peak memory of decoding a top-resolution clip (the cascade's last step) with the ``walt``
tokenizer: our decode (temporal streaming + spatial tiling, the ``CausalVAE`` defaults) against a
plain one-shot decode (``stream=False``, ``tile_above=0``).

    python benchmarks/decode_memory.py [--frames 17] [--size 512x896] [--plain-sizes 64x112 128x224]

Every decode runs in a fresh subprocess (random weights, ``torch.no_grad()``, batch 1, fp32, CPU):
peak memory = peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) minus the RSS once the
model and the latent exist. The plain decode of a 512x896 clip does not fit a small machine's
memory (its full-resolution activations alone are 128 x 17 x 512 x 896 floats = 4 GiB each), so
it is measured at the smaller ``--plain-sizes`` and extrapolated linearly in the frame area
(activation memory of a fully convolutional decoder is proportional to it); ``--plain-full``
measures it at the top size too. While a worker runs it prints its elapsed time and peak RSS to
stderr every ``--report-every`` seconds, so a run cut short still shows the peak reached so far.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.harness import peak_rss_mib, rss_mib  # noqa: E402


def _size(text: str) -> tuple[int, int]:
    h, _, w = text.lower().partition("x")
    return int(h), int(w or h)


def worker(args: argparse.Namespace) -> None:
    """One decode in this process; prints one JSON line."""
    from tokenizer import CausalVAE

    torch.manual_seed(0)
    plain = args.mode == "plain"
    vae = CausalVAE.from_preset(args.preset, **({"tile_above": 0} if plain else {})).eval()
    height, width = args.size
    t, h, w = vae.latent_shape(args.frames, height, width)
    z = torch.randn(1, vae.latent_channels, t, h, w)  # (B, c, t, h, w)
    base, t0 = rss_mib(), time.perf_counter()

    def report() -> None:
        while True:
            time.sleep(args.report_every)
            print(f"{time.perf_counter() - t0:.0f} s: peak +{peak_rss_mib() - base:.0f} MiB",
                  file=sys.stderr, flush=True)

    threading.Thread(target=report, daemon=True).start()
    with torch.no_grad():
        x = vae.decode(z, stream=False if plain else None)  # (B, 3, T, H, W)
    row = {
        "mode": args.mode, "preset": args.preset, "frames": args.frames, "size": list(args.size),
        "out": list(x.shape), "decode_s": time.perf_counter() - t0,
        "peak_mem_MiB": peak_rss_mib() - base, "output_MiB": x.numel() * 4 / 2**20,
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(row), flush=True)


def run_worker(mode: str, size: tuple[int, int], args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--mode", mode, "--size", f"{size[0]}x{size[1]}",
           "--frames", str(args.frames), "--preset", args.preset,
           "--report-every", str(args.report_every)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"worker {mode} {size} failed with exit code {out.returncode}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--size", type=_size, default=(512, 896), help="HxW of the decoded clip")
    parser.add_argument("--plain-sizes", type=_size, nargs="*", default=[(64, 112), (128, 224)],
                        help="sizes at which the plain decode is measured and extrapolated from")
    parser.add_argument("--plain-full", action="store_true",
                        help="also run the plain decode at --size (needs tens of GiB)")
    parser.add_argument("--preset", default="walt", help="CausalVAE preset")
    parser.add_argument("--report-every", type=float, default=60.0)
    parser.add_argument("--json", default=None, help="append result rows to this JSON-lines file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["ours", "plain"], default="ours",
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY:
        print("note: an address-space limit is set; large decodes may fail", file=sys.stderr)
    jobs = [("plain", s) for s in args.plain_sizes] + [("ours", args.size)]
    if args.plain_full:
        jobs.append(("plain", args.size))
    rows = []
    for mode, size in jobs:
        r = run_worker(mode, size, args)
        rows.append(r)
        print(f"{mode:5s} {args.frames}x{size[0]}x{size[1]}: peak +{r['peak_mem_MiB']:.0f} MiB, "
              f"{r['decode_s']:.0f} s (output {r['output_MiB']:.0f} MiB)", flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(r) + "\n")
    area = args.size[0] * args.size[1]
    for r in rows:
        if r["mode"] == "plain" and tuple(r["size"]) != tuple(args.size):
            scale = area / (r["size"][0] * r["size"][1])
            print(f"plain {args.frames}x{args.size[0]}x{args.size[1]} extrapolated from "
                  f"{r['size'][0]}x{r['size'][1]} (x{scale:.0f} area): "
                  f"+{r['peak_mem_MiB'] * scale / 1024:.1f} GiB")


if __name__ == "__main__":
    main()
