"""Reconstruction quality and speed of a tokenizer.

    python -m tokenizer.evaluate CKPT SHARDS_OR_FOLDER [--num-frames 17] [--size 128]
        [--max-clips N] [--out-dir DIR] [--images] [--json PATH]

Prints per-clip and mean PSNR / SSIM and the encode and decode seconds per frame; with
``--out-dir`` writes input | reconstruction mp4s.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import torch

from common.atomic import atomic_open
from data.encode import write_mp4
from tokenizer.clips import iter_clips
from tokenizer.loading import load_tokenizer
from tokenizer.metrics import psnr, ssim
from tokenizer.network.vae import CausalVAE
from tokenizer.training.media import side_by_side


@torch.no_grad()
def evaluate(
    vae: CausalVAE,
    source: str,
    *,
    num_frames: int,
    size: int,
    max_clips: int,
    images: bool = False,
    out_dir: str | None = None,
) -> dict:
    """Per-clip and mean metrics; ``{"clips": [...], "mean_psnr": ..., ...}``."""
    rows, enc_s, dec_s, frames = [], 0.0, 0.0, 0
    for key, pixels in iter_clips(source, num_frames=num_frames, size=size, images=images):
        t0 = time.perf_counter()
        z = vae.encode(pixels, pad=True)
        t1 = time.perf_counter()
        recon = vae.decode(z, crop_to=pixels.shape[2:])
        t2 = time.perf_counter()
        enc_s, dec_s, frames = (
            enc_s + t1 - t0,
            dec_s + t2 - t1,
            frames + pixels.shape[0] * pixels.shape[2],
        )
        row = {
            "clip": key,
            "psnr": psnr(recon, pixels).mean().item(),
            "ssim": ssim(recon, pixels).mean().item(),
        }
        rows.append(row)
        print(f"{key}: PSNR {row['psnr']:.2f} dB  SSIM {row['ssim']:.4f}", flush=True)
        if out_dir:
            name = re.sub(r"[^A-Za-z0-9_.-]", "_", key)[:80]
            write_mp4(side_by_side(pixels[0], recon[0]), Path(out_dir) / f"{name}.mp4")
        if len(rows) >= max_clips:
            break
    if not rows:
        raise ValueError(f"no clips could be read from {source}")
    return {
        "clips": rows,
        "mean_psnr": sum(r["psnr"] for r in rows) / len(rows),
        "mean_ssim": sum(r["ssim"] for r in rows) / len(rows),
        "encode_s_per_frame": enc_s / frames,
        "decode_s_per_frame": dec_s / frames,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("ckpt", help="TokenizerModule .ckpt or tokenizer .safetensors")
    parser.add_argument("source", help="webdataset shards (path / brace pattern) or a media folder")
    parser.add_argument("--num-frames", type=int, default=17)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--max-clips", type=int, default=64)
    parser.add_argument("--images", action="store_true", help="evaluate image samples too")
    parser.add_argument("--out-dir", default=None, help="write input|reconstruction mp4s here")
    parser.add_argument("--json", default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    vae = load_tokenizer(args.ckpt)
    result = evaluate(
        vae,
        args.source,
        num_frames=args.num_frames,
        size=args.size,
        max_clips=args.max_clips,
        images=args.images,
        out_dir=args.out_dir,
    )
    print(
        f"mean over {len(result['clips'])} clips: PSNR {result['mean_psnr']:.2f} dB  "
        f"SSIM {result['mean_ssim']:.4f}  encode {result['encode_s_per_frame'] * 1e3:.1f} ms/frame  "
        f"decode {result['decode_s_per_frame'] * 1e3:.1f} ms/frame"
    )
    if args.json:
        with atomic_open(args.json, "w") as f:
            f.write(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
