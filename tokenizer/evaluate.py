"""Reconstruction quality and speed of a tokenizer.

    python -m tokenizer.evaluate CKPT SHARDS_OR_FOLDER [--num-frames 17] [--size 128]
        [--max-clips N] [--clips-per-file N] [--target-fps F] [--out-dir DIR] [--images]
        [--json PATH]

Prints a table of per-clip and mean PSNR / SSIM of the tokenizer and, on exactly the same
clips, of the trivial codec (``tokenizer.baselines``: the floor every figure is read against),
and the encode and decode seconds per frame; with ``--out-dir`` writes input | reconstruction
mp4s.
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
from tokenizer.baselines import trivial_codec
from tokenizer.clips import iter_clips
from tokenizer.loading import load_tokenizer
from tokenizer.metrics import psnr, ssim
from tokenizer.network.vae import CausalVAE
from tokenizer.training.media import side_by_side


def _scores(recon: torch.Tensor, pixels: torch.Tensor) -> tuple[float, float]:
    return psnr(recon, pixels).mean().item(), ssim(recon, pixels).mean().item()


@torch.no_grad()
def reconstruct(vae: CausalVAE, pixels: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """``vae``'s reconstruction of ``(B, C, T, H, W)`` pixels (padded to its grid for encoding,
    cropped back after decoding), with the seconds spent encoding and decoding."""
    t0 = time.perf_counter()
    z = vae.encode(pixels, pad=True)
    t1 = time.perf_counter()
    recon = vae.decode(z, crop_to=pixels.shape[2:])
    return recon, t1 - t0, time.perf_counter() - t1


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
    clips_per_file: int = 1,
    target_fps: float | None = None,
) -> dict:
    """Per-clip and mean metrics of ``vae`` and of the trivial codec on the same clips.

    Returns ``{"clips": [{"clip", "psnr", "ssim", "codec_psnr", "codec_ssim"}, ...],
    "mean_psnr", "mean_ssim", "codec_mean_psnr", "codec_mean_ssim", "encode_s_per_frame",
    "decode_s_per_frame"}``. ``clips_per_file`` and ``target_fps``: see
    :func:`tokenizer.clips.folder_clips`.
    """
    rows, enc_s, dec_s, frames = [], 0.0, 0.0, 0
    clips = iter_clips(
        source,
        num_frames=num_frames,
        size=size,
        images=images,
        clips_per_file=clips_per_file,
        target_fps=target_fps,
    )
    print(f"{'clip':<44} {'PSNR dB':>8} {'SSIM':>7} | {'codec PSNR':>10} {'SSIM':>7}", flush=True)
    for key, pixels in clips:
        recon, encode_s, decode_s = reconstruct(vae, pixels)
        enc_s, dec_s = enc_s + encode_s, dec_s + decode_s
        frames += pixels.shape[0] * pixels.shape[2]
        row: dict = {"clip": key}
        row["psnr"], row["ssim"] = _scores(recon, pixels)
        row["codec_psnr"], row["codec_ssim"] = _scores(trivial_codec(pixels, pad=True), pixels)
        rows.append(row)
        print(_table_row(key, row), flush=True)
        if out_dir:
            name = re.sub(r"[^A-Za-z0-9_.-]", "_", key)[:80]
            write_mp4(side_by_side(pixels[0], recon[0]), Path(out_dir) / f"{name}.mp4")
        if len(rows) >= max_clips:
            break
    if not rows:
        raise ValueError(f"no clips could be read from {source}")
    means = {
        f"{prefix}mean_{metric}": sum(r[f"{prefix}{metric}"] for r in rows) / len(rows)
        for prefix in ("", "codec_")
        for metric in ("psnr", "ssim")
    }
    return {
        "clips": rows,
        **means,
        "encode_s_per_frame": enc_s / frames,
        "decode_s_per_frame": dec_s / frames,
    }


def _table_row(name: str, row: dict) -> str:
    return (
        f"{name[:44]:<44} {row['psnr']:>8.2f} {row['ssim']:>7.4f} | "
        f"{row['codec_psnr']:>10.2f} {row['codec_ssim']:>7.4f}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("ckpt", help="TokenizerModule .ckpt or tokenizer .safetensors")
    parser.add_argument("source", help="webdataset shards (path / brace pattern) or a media folder")
    parser.add_argument("--num-frames", type=int, default=17)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--max-clips", type=int, default=64)
    parser.add_argument(
        "--clips-per-file", type=int, default=1, help="folder: clips per video (seeded start times)"
    )
    parser.add_argument(
        "--target-fps", type=float, default=None, help="folder: clip frame rate (default: source)"
    )
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
        clips_per_file=args.clips_per_file,
        target_fps=args.target_fps,
    )
    mean = {f"{p}{m}": result[f"{p}mean_{m}"] for p in ("", "codec_") for m in ("psnr", "ssim")}
    print(_table_row(f"mean over {len(result['clips'])} clips", mean))
    print(
        f"tokenizer - trivial codec: {result['mean_psnr'] - result['codec_mean_psnr']:+.2f} dB PSNR; "
        f"encode {result['encode_s_per_frame'] * 1e3:.1f} ms/frame  "
        f"decode {result['decode_s_per_frame'] * 1e3:.1f} ms/frame"
    )
    if args.json:
        with atomic_open(args.json, "w") as f:
            f.write(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
