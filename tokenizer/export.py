"""Export a ``TokenizerModule`` checkpoint's EMA VAE to safetensors.

    python -m tokenizer.export CKPT OUT.safetensors [--raw]

The file carries the VAE config and latent statistics in its metadata; load it with
``tokenizer.load_tokenizer``.
"""

from __future__ import annotations

import argparse

from common.atomic import atomic_path
from tokenizer.loading import load_tokenizer, save_tokenizer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "ckpt", help="Lightning checkpoint of tokenizer.TokenizerModule (or an export)"
    )
    parser.add_argument("out", help="output .safetensors path")
    parser.add_argument("--raw", action="store_true", help="export the raw (non-EMA) weights")
    args = parser.parse_args(argv)
    if not args.out.endswith(".safetensors"):
        parser.error(f"output must end with .safetensors, got {args.out}")
    vae = load_tokenizer(args.ckpt, use_ema=not args.raw)
    with atomic_path(args.out) as tmp:  # never a truncated export
        save_tokenizer(vae, tmp)
    path = args.out
    n = sum(p.numel() for p in vae.parameters())
    print(f"wrote {path} ({n / 1e6:.2f}M parameters, latent_channels={vae.latent_channels})")


if __name__ == "__main__":
    main()
