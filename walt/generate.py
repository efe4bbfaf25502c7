"""Class-conditional (or unconditional) video generation from a trained W.A.L.T checkpoint.

    python -m walt.generate CKPT --out DIR [--per-class 2] [--labels 0,3] [--num-inference-steps 50]

Writes one mp4 and one gif per clip, a PNG contact sheet (a row per clip) and ``samples.pt``
(the pixels, for scoring), then prints the folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from tqdm import tqdm

from walt.lightning import WALTModule
from walt.lightning.loading import load_walt_checkpoint
from walt.media import contact_sheet, write_gif, write_mp4_clip


def load_module(ckpt: str | Path, *, device: str = "cpu") -> WALTModule:
    """Load a WALTModule from a Lightning checkpoint: no unpickling, and only registered classes
    (``common.registry``) are built; the checkpoint cannot make this import a module."""
    return load_walt_checkpoint(ckpt, map_location=device).eval()


def parse_labels(text: str | None, per_class: int, num_classes: int) -> list[int] | None:
    """Explicit ``--labels`` win; otherwise every class ``per_class`` times; None if unconditional."""
    if text:
        labels = [int(v) for v in text.split(",")]
        bad = [v for v in labels if not 0 <= v < num_classes]
        if bad:
            raise ValueError(f"labels {bad} are outside [0, {num_classes})")
        return labels
    if num_classes == 0:
        return None
    return [c for c in range(num_classes) for _ in range(per_class)]


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ckpt", help="Lightning checkpoint of a WALTModule")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--labels", help="comma-separated class indices (default: every class)")
    parser.add_argument("--per-class", type=int, default=2, help="clips per class")
    parser.add_argument("--num-samples", type=int, default=4, help="clips for unconditional models")
    parser.add_argument(
        "--num-inference-steps", type=int, default=None, help="sampler steps (default: module's)"
    )
    parser.add_argument("--sampler", choices=["ddim", "ddpm", "dpmpp_2m"], default=None)
    parser.add_argument(
        "--guidance-scale", type=float, default=None, help="classifier-free guidance scale"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--fps", type=float, default=8.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--class-names", help="JSON list of class names, for the contact sheet")
    args = parser.parse_args(argv)

    module = load_module(args.ckpt)
    num_classes = getattr(module.backbone, "num_classes", 0)
    labels = parse_labels(args.labels, args.per_class, num_classes)
    total = len(labels) if labels is not None else args.num_samples
    generator = torch.Generator().manual_seed(args.seed)
    videos = []
    for start in tqdm(range(0, total, args.batch_size), desc="sampling", unit="batch"):
        n = min(args.batch_size, total - start)
        batch_labels = None if labels is None else torch.tensor(labels[start : start + n])
        videos.append(
            module.generate(
                labels=batch_labels,
                num_samples=n,
                sampler=args.sampler,
                num_inference_steps=args.num_inference_steps,
                guidance_scale=args.guidance_scale,
                generator=generator,
            ).float()
        )
    pixels = torch.cat(videos)  # (B, C, T, H, W)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = json.loads(Path(args.class_names).read_text()) if args.class_names else None
    captions = [names[v] if names else f"class {v}" for v in labels] if labels else None
    for i, video in enumerate(pixels):
        write_mp4_clip(video, out / f"sample_{i:03d}.mp4", fps=args.fps)
        write_gif(video, out / f"sample_{i:03d}.gif", fps=args.fps, scale=2)
    contact_sheet(pixels, out / "contact_sheet.png", labels=captions)
    torch.save({"pixels": pixels, "labels": labels}, out / "samples.pt")
    print(out)
    return out


if __name__ == "__main__":
    main()
