"""Class-conditional (or unconditional) video generation from a trained W.A.L.T checkpoint.

    python -m walt.generate CKPT --out DIR [--per-class 2] [--labels 0,3] [--num-inference-steps 50]
        [--sampler ddim] [--sampler-options '{"eta": 0.5}'] [--guidance-scale 4]
        [--guidance-schedule linear] [--guidance-min-scale 1] [--guidance-rescale 0.7]

Sampling flags left out keep the values the checkpoint was trained with (the module's
``num_inference_steps``, ``sampler``, ``guidance_*`` and ``sampler_options``).

Writes one mp4 and one gif per clip, a PNG contact sheet (a row per clip) and ``samples.pt``
(the pixels, for scoring), then prints the folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from common.atomic import atomic_path
from walt.lightning import WALTModule
from walt.lightning.loading import load_walt_checkpoint
from walt.media import write_samples
from walt.samplers import sampler_names
from walt.samplers.guidance import GUIDANCE_SCHEDULES


def load_module(ckpt: str | Path, *, device: str = "cpu", **overrides: Any) -> WALTModule:
    """Load a WALTModule from a Lightning checkpoint: no unpickling, and only registered classes
    (``common.registry``) are built; the checkpoint cannot make this import a module.

    ``overrides`` replace saved constructor arguments (e.g. ``guidance_rescale=0.7``).
    """
    return load_walt_checkpoint(ckpt, map_location=device, **overrides).eval()


# Command-line flags that override the module's sampling arguments of the same name.
SAMPLING_FLAGS = (
    "num_inference_steps",
    "sampler",
    "sampler_options",
    "guidance_scale",
    "guidance_schedule",
    "guidance_min_scale",
    "guidance_rescale",
)


def add_sampling_flags(parser: argparse.ArgumentParser) -> None:
    """``--num-inference-steps``, ``--sampler``, ``--sampler-options`` and ``--guidance-*``."""
    default = "(default: the checkpoint's)"
    parser.add_argument("--num-inference-steps", type=int, help=f"sampler steps {default}")
    parser.add_argument("--sampler", choices=sampler_names(), help=f"sampler {default}")
    example = """'{"eta": 0.5}'"""
    parser.add_argument(
        "--sampler-options", type=json.loads, help=f"sampler options as JSON ({example}) {default}"
    )
    parser.add_argument("--guidance-scale", type=float, help=f"guidance scale {default}")
    parser.add_argument(
        "--guidance-schedule", choices=GUIDANCE_SCHEDULES, help=f"guidance schedule {default}"
    )
    parser.add_argument("--guidance-min-scale", type=float, help=f"schedule start {default}")
    parser.add_argument("--guidance-rescale", type=float, help=f"guidance rescale {default}")


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
    add_sampling_flags(parser)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--fps", type=float, default=8.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--class-names", help="JSON list of class names, for the contact sheet")
    args = parser.parse_args(argv)

    flags = {name: getattr(args, name) for name in SAMPLING_FLAGS}
    module = load_module(args.ckpt, **{k: v for k, v in flags.items() if v is not None})
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
                generator=generator,
            ).float()
        )
    pixels = torch.cat(videos)  # (B, C, T, H, W)
    out = Path(args.out)
    names = json.loads(Path(args.class_names).read_text()) if args.class_names else None
    captions = [names[v] if names else f"class {v}" for v in labels] if labels else None
    write_samples(pixels, out, labels=captions, fps=args.fps)
    with atomic_path(out / "samples.pt") as tmp:
        torch.save({"pixels": pixels, "labels": labels}, tmp)
    print(out)
    return out


if __name__ == "__main__":
    main()
