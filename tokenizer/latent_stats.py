"""Per-channel latent mean and std over a data set, stored in the tokenizer's config.

    python -m tokenizer.latent_stats CKPT SHARDS [--max-samples N] [--out PATH]
        [--num-frames 17] [--size 128] [--images] [--batch-size 8]

The diffusion stage trains on ``vae.normalize(z)``; W.A.L.T reports that dropping latent
normalisation costs FVD 60.7 -> 67.9 (UCF-101 ablation). The statistics are written into the
checkpoint's ``config`` (a ``.ckpt``) or the export's metadata (``.safetensors``);
by default ``CKPT`` is updated in place (through a temporary file and a rename, so an
interrupted write leaves the original intact).
"""

from __future__ import annotations

import argparse

import torch

from common.atomic import atomic_path
from tokenizer.clips import iter_clips
from tokenizer.loading import load_tokenizer, store_latent_stats
from tokenizer.network.vae import CausalVAE


class ChannelMoments:
    """Running per-channel sums (float64) of latents (B, c, t, h, w)."""

    def __init__(self, channels: int) -> None:
        self.count = 0
        self.sum = torch.zeros(channels, dtype=torch.float64)
        self.sumsq = torch.zeros(channels, dtype=torch.float64)

    def update(self, z: torch.Tensor) -> None:
        flat = z.detach().double().transpose(0, 1).reshape(z.shape[1], -1)  # (c, N)
        self.count += flat.shape[1]
        self.sum += flat.sum(dim=1)
        self.sumsq += flat.pow(2).sum(dim=1)

    def result(self) -> tuple[list[float], list[float]]:
        if self.count == 0:
            raise ValueError("no latents were accumulated; the data source yielded no clips")
        mean = self.sum / self.count
        var = (self.sumsq / self.count - mean.pow(2)).clamp_min(1e-12)
        return mean.tolist(), var.sqrt().tolist()


@torch.no_grad()
def compute_latent_stats(
    vae: CausalVAE, source: str, *, num_frames: int, size: int, max_samples: int, images: bool,
    batch_size: int = 8,
) -> tuple[list[float], list[float], int]:
    """(mean, std, samples) of the posterior means of clips from ``source`` (shards are
    encoded ``batch_size`` clips at a time; a folder one file at a time)."""
    moments = ChannelMoments(vae.latent_channels)
    seen = 0
    clips = iter_clips(source, num_frames=num_frames, size=size, images=images,
                       batch_size=batch_size)
    for _key, pixels in clips:  # (B, 3, T, H, W)
        pixels = pixels[: max_samples - seen]
        moments.update(vae.encode(pixels))
        seen += pixels.shape[0]
        if seen >= max_samples:
            break
    mean, std = moments.result()
    return mean, std, seen


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("ckpt", help="TokenizerModule .ckpt or tokenizer .safetensors")
    parser.add_argument("shards", help="webdataset shards (path / brace pattern) or a media folder")
    parser.add_argument("--max-samples", type=int, default=512)
    parser.add_argument("--out", default=None, help="output path (default: update CKPT in place)")
    parser.add_argument("--num-frames", type=int, default=17)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--images", action="store_true", help="include image samples as well")
    parser.add_argument("--batch-size", type=int, default=8, help="clips encoded together")
    args = parser.parse_args(argv)
    vae = load_tokenizer(args.ckpt)
    mean, std, seen = compute_latent_stats(
        vae,
        args.shards,
        num_frames=args.num_frames,
        size=args.size,
        max_samples=args.max_samples,
        images=args.images,
        batch_size=args.batch_size,
    )
    out = args.out or args.ckpt
    # Through a temporary file: by default CKPT is rewritten in place, and a kill or a full
    # disk must not destroy the only copy.
    with atomic_path(out) as tmp:
        store_latent_stats(args.ckpt, mean, std, tmp)
    print(f"latent stats over {seen} samples written to {out}")
    print("latent_mean:", [round(v, 4) for v in mean])
    print("latent_std: ", [round(v, 4) for v in std])


if __name__ == "__main__":
    main()
