"""Turn video/image shards into latent shards, so diffusion training skips the VAE entirely.

    python -m walt.precompute TOKENIZER OUT_PATTERN --videos SHARDS [--images SHARDS]
        [--num-frames 17] [--size 128] [--text-encoder DIR] [--lowres [bilinear|area]]

Each input sample becomes one output sample with the same key, holding ``latents.npy``: the
tokenizer's raw posterior mean ``(c, t, h, w)`` (not normalized; the training module normalizes
with the statistics in the tokenizer's config, so recomputing the statistics never invalidates
precomputed shards), plus ``cls``, ``txt``, ``json`` (``kind``, ``fps``, ``stride``) and, with a
text encoder, ``text_emb.npy`` ``(L, E)`` and ``text_mask.npy`` ``(L,)``. With ``--lowres``
each sample also holds ``lowres_latents.npy`` ``(c, t, h/2, w/2)``: the same clip downsampled 2x
with antialiasing and encoded, the training pair of a super-resolution stage
(``docs/super_resolution.md``), so its training never runs the tokenizer.

Clips are taken the validation way (centre crop, deterministic clip), once per sample; random
clip sampling and cropping are traded for speed. Train on the result with
``data.WebVideoDataModule(..., load_pixels=False)``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from tqdm import tqdm

from common.atomic import atomic_path
from data import ShardSink, WebVideoDataModule
from tokenizer import load_tokenizer
from walt.core.super_resolution import Downsample, downsample_pixels
from walt.text_encoder import TextEncoder


def precompute(
    tokenizer: str | Path,
    out_pattern: str,
    *,
    videos: str | list[str] | None,
    images: str | list[str] | None = None,
    num_frames: int = 17,
    size: int | tuple[int, int] = 128,
    frame_stride: int | None = None,
    target_fps: float | None = None,
    batch_size: int = 8,
    num_workers: int = 2,
    text_encoder: str | None = None,
    max_samples_per_shard: int = 1000,
    device: str = "cpu",
    lowres: Downsample | None = None,
) -> int:
    """Encode every sample of ``videos`` / ``images``; returns the number of samples written.
    ``lowres`` (a downsampling mode) also writes each clip's 2x-downsampled latents."""
    vae = load_tokenizer(tokenizer, device=device)
    encoder = TextEncoder(text_encoder).to(device) if text_encoder else None
    dm = WebVideoDataModule(
        val_videos=videos,
        val_images=images,
        num_frames=num_frames,
        size=size,
        frame_stride=frame_stride,
        target_fps=target_fps,
        batch_size=batch_size,
        num_workers=num_workers,
        short_clip="loop",
    )
    dm.setup("validate")
    Path(out_pattern).parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with ShardSink(out_pattern, max_samples=max_samples_per_shard) as sink:
        for batch in tqdm(dm.val_dataloader(), desc="precompute", unit="batch"):
            for kind, stream in batch.items():
                for sample in _encode_stream(vae, encoder, kind, stream, device, lowres=lowres):
                    sink.write(sample)
                    written += 1
    if written == 0:
        raise RuntimeError(f"no sample could be read from videos={videos!r} images={images!r}")
    return written


@torch.no_grad()
def embed_prompts(text_encoder: str | Path, prompts: list[str], out: str | Path) -> Path:
    """Embed ``prompts`` with the local text encoder into one safetensors file (``text_emb``
    (N, L, E), ``text_mask`` (N, L) as uint8), which ``python -m walt.generate --text-embeddings``
    reads; written atomically."""
    emb, mask = TextEncoder(text_encoder)(prompts)
    with atomic_path(out) as tmp:
        save_file({"text_emb": emb.float().contiguous(), "text_mask": mask.to(torch.uint8)}, tmp)
    return Path(out)


@torch.no_grad()
def _encode_stream(
    vae, encoder, kind: str, stream: dict, device: str, *, lowres: Downsample | None = None
) -> list[dict]:
    pixels = stream["pixels"].to(device)
    z = vae.encode(pixels).float().cpu().numpy()  # (B, c, t, h, w)
    if lowres is not None:
        small = downsample_pixels(pixels, mode=lowres)  # (B, C, T, H/2, W/2)
        z_lr = vae.encode(small).float().cpu().numpy()  # (B, c, t, h/2, w/2)
    if encoder is not None:
        emb, mask = encoder(stream["caption"])
        emb, mask = emb.float().cpu().numpy(), mask.cpu().numpy()
    samples = []
    for i, key in enumerate(stream["key"]):
        sample = {
            "__key__": key,
            "latents.npy": z[i],
            "json": json.dumps(
                {"kind": kind, "fps": float(stream["fps"][i]), "stride": int(stream["stride"][i])}
            ).encode(),
        }
        if int(stream["label"][i]) >= 0:
            sample["cls"] = str(int(stream["label"][i])).encode()
        if stream["caption"][i]:
            sample["txt"] = stream["caption"][i].encode()
        if lowres is not None:
            sample["lowres_latents.npy"] = z_lr[i]
        if encoder is not None:
            sample["text_emb.npy"], sample["text_mask.npy"] = emb[i], mask[i].astype(np.uint8)
        samples.append(sample)
    return samples


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Encode video/image shards into latent shards.")
    parser.add_argument("tokenizer", help="tokenizer safetensors export or checkpoint")
    parser.add_argument("out_pattern", help="output shard pattern, e.g. latents/shard-%%06d.tar")
    parser.add_argument("--videos", nargs="+", help="video shard URLs or brace patterns")
    parser.add_argument("--images", nargs="+", help="image shard URLs or brace patterns")
    parser.add_argument("--num-frames", type=int, default=17, help="frames per clip (1 + 4k)")
    parser.add_argument("--size", type=int, nargs="+", default=[128], help="H [W] of the clips")
    parser.add_argument("--frame-stride", type=int, default=None)
    parser.add_argument("--target-fps", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--text-encoder", help="local folder of a T5-style encoder")
    parser.add_argument("--lowres", nargs="?", const="bilinear", choices=["bilinear", "area"],
                        help="also write 2x-downsampled latents (super-resolution pairs)")
    parser.add_argument("--max-samples-per-shard", type=int, default=1000)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    if not args.videos and not args.images:
        parser.error("give --videos and/or --images")
    size = tuple(args.size) if len(args.size) == 2 else args.size[0]
    n = precompute(
        args.tokenizer,
        args.out_pattern,
        videos=args.videos,
        images=args.images,
        num_frames=args.num_frames,
        size=size,
        frame_stride=args.frame_stride,
        target_fps=args.target_fps,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        text_encoder=args.text_encoder,
        max_samples_per_shard=args.max_samples_per_shard,
        device=args.device,
        lowres=args.lowres,
    )
    print(f"wrote {n} latent samples to {args.out_pattern}")


if __name__ == "__main__":
    main()
