"""Score generated moving-shapes clips against the classes they were asked for.

    python -m walt.evaluate_synthetic SAMPLES_DIR --shards PATTERN [--metrics CSV]

``SAMPLES_DIR`` is the output of ``python -m walt.generate`` (its ``samples.pt``). The class names
come from the shards' metadata. A deterministic detector (``data.shape_detector``) reads each
clip's shape, colour and motion direction; the score is the fraction of clips where it finds the
requested ones. With ``--metrics`` (a CSVLogger ``metrics.csv``), a loss-curve PNG is also drawn.
Writes ``score.json`` into ``SAMPLES_DIR`` and prints it.
"""

from __future__ import annotations

import argparse
import json
import tarfile
from pathlib import Path

import braceexpand
import torch

from common.atomic import atomic_open
from data.shape_detector import score_samples
from walt.media import loss_curve


def class_names_from_shards(pattern: str) -> list[str]:
    """The ``class_names`` list stored in the first json member of the first shard."""
    first = next(iter(braceexpand.braceexpand(pattern)))
    with tarfile.open(first) as tar:
        for member in tar:
            if member.name.endswith(".json"):
                meta = json.loads(tar.extractfile(member).read())
                if "class_names" in meta:
                    return list(meta["class_names"])
    raise ValueError(f"no json member with 'class_names' in {first}")


def evaluate(samples_dir: str | Path, shards: str, metrics: str | Path | None = None) -> dict:
    samples_dir = Path(samples_dir)
    saved = torch.load(samples_dir / "samples.pt", weights_only=True)
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Score generated moving-shapes clips.")
    parser.add_argument("samples_dir", help="folder written by python -m walt.generate")
    parser.add_argument("--shards", required=True, help="a shard pattern of the training data")
    parser.add_argument("--metrics", help="CSVLogger metrics.csv, for a loss-curve PNG")
    args = parser.parse_args(argv)
    score = evaluate(args.samples_dir, args.shards, args.metrics)
    print(json.dumps(score))


if __name__ == "__main__":
    main()
