"""Score generated moving-shapes clips against the classes they were asked for.

    python -m walt.evaluate_synthetic SAMPLES_DIR --shards PATTERN [--metrics CSV]
    python -m walt.evaluate_synthetic LONG_DIR --shards PATTERN --chunk-frames 12 --seam-overlap 5
    python -m walt.evaluate_synthetic --reconstruct TOKENIZER --shards PATTERN [--size 32]

``SAMPLES_DIR`` is the output of ``python -m walt.generate`` (its ``samples.pt``). The class names
come from the shards' metadata. A deterministic detector (``data.shape_detector``) reads each
clip's shape, colour and motion direction; the score is the fraction of clips where it finds the
requested ones. With ``--metrics`` (a CSVLogger ``metrics.csv``), a loss-curve PNG is also drawn.
Writes ``score.json`` into ``SAMPLES_DIR`` and prints it.

With ``--chunk-frames`` (long videos of ``python -m walt.generate --mode extend``), every
``sample_XXX.mp4`` is cut into its chunks as ``walt.evaluate drift`` cuts them
(``walt.evaluate.drift.chunk_starts``), the requested classes come from ``settings.json``, and
``chunk_score.json`` holds the detector's rates per chunk: how well colour and direction survive
extension.

With ``--reconstruct TOKENIZER`` (an export or checkpoint), the shards' clips at ``--size`` are
encoded and decoded by the tokenizer and the reconstructions scored against their own labels,
with their mean PSNR: the tokenizer's ceiling on what a W.A.L.T trained on its latents can
score (``--json`` writes it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from common.atomic import atomic_open
from common.checkpoint_files import read_weights_file
from data.class_names import class_names_from_shards
from data.datamodule import WebVideoDataModule
from data.shape_detector import score_samples
from tokenizer.evaluate import reconstruct
from tokenizer.loading import load_tokenizer
from tokenizer.metrics import psnr
from walt.evaluate.drift import chunk_starts
from walt.evaluate.inputs import MediaItem, read_frames
from walt.media import loss_curve


def evaluate(samples_dir: str | Path, shards: str, metrics: str | Path | None = None) -> dict:
    samples_dir = Path(samples_dir)
    saved = read_weights_file(samples_dir / "samples.pt")
    if saved["labels"] is None:
        raise ValueError("the samples are unconditional; scoring needs requested classes")
    names = class_names_from_shards(shards)
    requested = [names[v] for v in saved["labels"]]
    score = score_samples(saved["pixels"], requested)
    if metrics is not None:
        loss_curve(metrics, samples_dir / "loss_curve.png")
    with atomic_open(samples_dir / "score.json", "w") as f:
        f.write(json.dumps(score, indent=2))
    return score


def evaluate_chunks(
    samples_dir: str | Path, shards: str, *, chunk_frames: int, seam_overlap: int
) -> list[dict]:
    """Detector rates (``score_samples``) per chunk over the run's long clips."""
    samples_dir = Path(samples_dir)
    labels = json.loads((samples_dir / "settings.json").read_text()).get("labels")
    if not labels:
        raise ValueError(f"{samples_dir}/settings.json has no labels; scoring needs classes")
    names = class_names_from_shards(shards)
    clips = [read_frames(MediaItem(key=p.name, kind="video", data=p.read_bytes()))
             for p in sorted(samples_dir.glob("sample_*.mp4"))]  # (T, H, W, 3) uint8 each
    if len(clips) != len(labels):
        raise ValueError(f"{len(clips)} clips in {samples_dir} but {len(labels)} labels")
    starts = chunk_starts(len(clips[0]), chunk_frames=chunk_frames, seam_overlap=seam_overlap)
    bounds = list(zip(starts, [*starts[1:], len(clips[0])]))
    scores = []
    for c, (start, stop) in enumerate(bounds):
        chunk = [np.ascontiguousarray(clip[start:stop].transpose(3, 0, 1, 2)) for clip in clips]
        scores.append({"chunk": c, "start": start, "stop": stop,
                       **score_samples(chunk, [names[v] for v in labels])})
    with atomic_open(samples_dir / "chunk_score.json", "w") as f:
        f.write(json.dumps(scores, indent=2))
    return scores


@torch.no_grad()
def evaluate_reconstructions(
    tokenizer: str | Path, shards: str, *, size: int, num_frames: int = 17, batch_size: int = 16
) -> dict:
    """Detector rates of the tokenizer's reconstructions of the labelled clips in ``shards``,
    next to the rates of the clips themselves (``input_*``) and the mean PSNR in dB."""
    vae = load_tokenizer(tokenizer)
    names = class_names_from_shards(shards)
    module = WebVideoDataModule(val_videos=shards, num_frames=num_frames, size=size,
                                batch_size=batch_size, num_workers=0)
    module.setup("validate")
    inputs, recons, labels = [], [], []
    for batch in module.val_dataloader():
        pixels = batch["video"]["pixels"]  # (B, 3, T, H, W)
        recon = reconstruct(vae, pixels)[0].clamp(-1, 1)
        inputs.append(pixels)
        recons.append(recon)
        labels += [names[v] for v in batch["video"]["label"].tolist()]
    if not labels:
        raise ValueError(f"no labelled clips in {shards}")
    pixels, recon = torch.cat(inputs), torch.cat(recons)
    score = score_samples(recon, labels)
    score.update({f"input_{k}": v for k, v in score_samples(pixels, labels).items()
                  if k in ("shape", "color", "direction", "joint")})
    score["psnr"] = float(psnr(recon, pixels).mean())
    score["size"] = float(size)
    return score


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Score generated moving-shapes clips.")
    parser.add_argument("samples_dir", nargs="?",
                        help="folder written by python -m walt.generate")
    parser.add_argument("--shards", required=True, help="a shard pattern of the training data")
    parser.add_argument("--metrics", help="CSVLogger metrics.csv, for a loss-curve PNG")
    parser.add_argument("--chunk-frames", type=int,
                        help="score each chunk of long videos (new frames per chunk)")
    parser.add_argument("--seam-overlap", type=int, default=5,
                        help="frames a chunk shares with the previous one (5 for extension)")
    parser.add_argument("--reconstruct", metavar="TOKENIZER",
                        help="score the tokenizer's reconstructions of the shards' clips")
    parser.add_argument("--size", type=int, default=32, help="clip size for --reconstruct")
    parser.add_argument("--num-frames", type=int, default=17, help="clip frames for --reconstruct")
    parser.add_argument("--json", help="also write the --reconstruct score here")
    args = parser.parse_args(argv)
    if args.reconstruct:
        score = evaluate_reconstructions(args.reconstruct, args.shards, size=args.size,
                                         num_frames=args.num_frames)
        if args.json:
            with atomic_open(args.json, "w") as f:
                f.write(json.dumps(score, indent=2))
    elif args.samples_dir is None:
        parser.error("samples_dir is required (or --reconstruct TOKENIZER)")
    elif args.chunk_frames:
        score = evaluate_chunks(args.samples_dir, args.shards, chunk_frames=args.chunk_frames,
                                seam_overlap=args.seam_overlap)
    else:
        score = evaluate(args.samples_dir, args.shards, args.metrics)
    print(json.dumps(score))


if __name__ == "__main__":
    main()
