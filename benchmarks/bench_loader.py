"""Clip-loading throughput: the datamodule's seek-and-decode path against whole-file decoding.

Usage::

    python benchmarks/bench_loader.py [--clips 4] [--size 256] [--frames 17] [--workers 0 2]
        [--reencoded]

Uses the real MP4 and WebM clips in ../shared/data/real/videos. Prints clips/s for
(a) ``decode_clip`` (seek to the keyframe before a random start, decode only the frames needed)
plus resize/crop, (b) decoding every frame of the file and slicing 17 of them plus the same
resize/crop, and (c) the full ``WebVideoDataModule`` training loader with 0 and 2 workers.
Also times one training step of the tiny model (``configs/walt/tiny_cpu.yaml``'s backbone on its
batch of latents), to say whether the loader keeps up with a tiny-model step.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import tempfile
from pathlib import Path

import av
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
TINY_CONFIG = ROOT / "configs" / "walt" / "tiny_cpu.yaml"

from harness import median, time_runs  # noqa: E402

from data.datamodule import WebVideoDataModule  # noqa: E402
from data.decode import decode_clip, frame_to_rgb  # noqa: E402
from data.encode import reencode_video  # noqa: E402
from data.transforms import frames_to_pixels  # noqa: E402

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "videos"


def seek_path(data: bytes, frames: int, size: int, rng: random.Random) -> torch.Tensor:
    clip = decode_clip(data, num_frames=frames, clip_start="random", rng=rng)
    return frames_to_pixels(clip.frames, size=(size, size), crop="random", rng=rng)


def whole_file_path(data: bytes, frames: int, size: int, rng: random.Random) -> torch.Tensor:
    with av.open(io.BytesIO(data)) as container:
        decoded = [frame_to_rgb(frame) for frame in container.decode(video=0)]
    start = rng.randint(0, len(decoded) - frames)
    clip = np.stack(decoded[start : start + frames])
    return frames_to_pixels(clip, size=(size, size), crop="random", rng=rng)


def clips_per_second(fn, files: list[bytes], clips: int, frames: int, size: int) -> float:
    rng = random.Random(0)

    def all_clips() -> None:
        for data in files:
            for _ in range(clips):
                fn(data, frames, size, rng)

    (seconds,) = time_runs(all_clips, warmup=0, reps=1)
    return len(files) * clips / seconds


def _module(shard: str, workers: int, clips: int, frames: int, size: int, *, batch_size: int = 4,
            load_pixels: bool = True) -> WebVideoDataModule:
    module = WebVideoDataModule(
        train_videos=shard, num_frames=frames, size=size, batch_size=batch_size,
        num_workers=workers, resampled=True, epoch_length=clips, shuffle_buffer=0,
        load_pixels=load_pixels,
    )
    module.setup("fit")
    return module


def _batch_size(batch: dict) -> int:
    return batch["video"]["pixels" if "pixels" in batch["video"] else "latents"].shape[0]


def loader_clips_per_second(shard: str, workers: int, clips: int, frames: int, size: int, *,
                            load_pixels: bool = True) -> float:
    """Clips/s of the training loader alone over ``clips`` clips of ``shard``."""
    module = _module(shard, workers, clips, frames, size, load_pixels=load_pixels)
    count = [0]

    def epoch() -> None:
        for batch, _, _ in module.train_dataloader():
            count[0] += _batch_size(batch)

    (seconds,) = time_runs(epoch, warmup=0, reps=1)
    return count[0] / seconds


def fed_step_clips_per_second(shard: str, workers: int, steps: int, frames: int, size: int) -> float:
    """Clips/s of the tiny model's training step from video shards (tokenizer encode, then the
    backbone step; :func:`tiny_step` with ``encode``) when each step takes one loader batch of
    its batch size: loader and step share the CPU, as in training. Against the same step on
    pixels held in memory, it says whether the loader keeps the step fed."""
    step, batch = tiny_step(encode=True)
    module = _module(shard, workers, steps * batch, frames, size, batch_size=batch)
    count = [0]

    def epoch() -> None:
        for data, _, _ in module.train_dataloader():
            step(data["video"]["pixels"])
            count[0] += _batch_size(data)

    (seconds,) = time_runs(epoch, warmup=0, reps=1)
    return count[0] / seconds


def write_shard(paths: list[Path], folder: Path) -> str:
    """One webdataset shard in ``folder`` holding the video files ``paths``; returns its path."""
    import webdataset as wds

    shard = str(folder / "bench.tar")
    with wds.TarWriter(shard) as sink:
        for path in paths:
            sink.write({"__key__": path.stem.replace(".", "_"), path.suffix[1:]: path.read_bytes()})
    return shard


def write_reencoded_shard(paths: list[Path], folder: Path, *, size: int, fps: float) -> str:
    """One shard of ``paths`` re-encoded to ``size`` pixels at ``fps`` (``make_shards
    --reencode``, the form training shards take for small models); returns its path."""
    import webdataset as wds

    shard = str(folder / "reencoded.tar")
    with wds.TarWriter(shard) as sink:
        for path in paths:
            sink.write({"__key__": path.stem.replace(".", "_"),
                        "mp4": reencode_video(path.read_bytes(), size=size, fps=fps)})
    return shard


def write_latent_shard(folder: Path, *, count: int, shape: tuple[int, ...]) -> str:
    """One shard of ``count`` random latent clips of ``shape`` (c, t, h, w) with class labels, in
    ``walt.precompute``'s layout; returns its path."""
    import webdataset as wds

    shard, rng = str(folder / "latents.tar"), np.random.default_rng(0)
    with wds.TarWriter(shard) as sink:
        for i in range(count):
            sink.write({"__key__": f"{i:06d}", "cls": b"0",
                        "latents.npy": rng.standard_normal(shape).astype(np.float32),
                        "json": json.dumps({"kind": "video", "fps": 8.0, "stride": 1}).encode()})
    return shard


def tiny_step(*, config: Path = TINY_CONFIG, encode: bool = False):
    """(step, batch size): one training step (forward, backward, AdamW) of the backbone of
    ``config`` on its own batch of latents (the tiny config trains on precomputed latents).

    ``encode``: ``step(pixels)`` first encodes a pixel batch (B, 3, T, H, W) with a `tiny`
    preset tokenizer, as training from video shards does (no precomputed latents)."""
    import yaml

    from models import WindowedDiT
    from walt.core.hparams import max_latent_size

    cfg = yaml.safe_load(config.read_text())
    data = cfg["data"]["init_args"]
    frames, size, batch = data["num_frames"], data["size"], data["batch_size"]
    torch.manual_seed(0)
    grid = tuple(max_latent_size(frames, size))
    model = WindowedDiT(**cfg["model"]["init_args"]["backbone"]["init_args"], max_latent_size=grid)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)  # as the configs
    x = torch.randn(batch, model.in_channels, *grid)  # (B, c, t, h, w)
    labels, steps = torch.zeros(batch, dtype=torch.long), torch.full((batch,), 500.0)

    vae = None
    if encode:
        from tokenizer import CausalVAE

        vae = CausalVAE.from_preset("tiny").eval()

    def step(pixels: torch.Tensor | None = None) -> None:
        latents = x
        if vae is not None:
            with torch.no_grad():
                latents = vae.encode(pixels)  # (B, c, t, h, w)
        opt.zero_grad(set_to_none=True)
        model(latents, steps[: len(latents)], class_labels=labels[: len(latents)]).square().mean().backward()
        opt.step()

    return step, batch


def tiny_latent_shape(config: Path = TINY_CONFIG) -> tuple[int, ...]:
    """(c, t, h, w) of one latent clip of ``config``'s training data."""
    import yaml

    from walt.core.hparams import max_latent_size

    cfg = yaml.safe_load(config.read_text())
    data = cfg["data"]["init_args"]
    channels = cfg["model"]["init_args"]["latent_channels"]
    return (channels, *max_latent_size(data["num_frames"], data["size"]))


def tiny_step_seconds(*, config: Path = TINY_CONFIG, reps: int = 3, encode: bool = False,
                      frames: int = 17, size: int = 32) -> tuple[float, int]:
    """(seconds, batch size) of :func:`tiny_step`, median of ``reps`` after one warm-up; with
    ``encode``, on a batch of random ``frames`` x ``size`` x ``size`` pixels in memory."""
    step, batch = tiny_step(config=config, encode=encode)
    pixels = torch.rand(batch, 3, frames, size, size) * 2 - 1 if encode else None
    return median(time_runs(lambda: step(pixels), warmup=1, reps=reps)), batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=4, help="clips per file (seek path)")
    parser.add_argument("--whole-clips", type=int, default=1, help="clips per file (whole decode)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--workers", type=int, nargs="*", default=[0, 2])
    parser.add_argument("--loader-clips", type=int, default=48)
    parser.add_argument(
        "--reencoded", action="store_true",
        help="also time the seek path on the files re-encoded to --size at 8 fps (make_shards --reencode)",
    )
    args = parser.parse_args()
    paths = sorted(p for p in REAL.glob("*") if p.suffix in (".mp4", ".webm"))
    if not paths:
        raise SystemExit(f"no .mp4/.webm files in {REAL}")
    files = [p.read_bytes() for p in paths]
    results: dict[str, float] = {
        "seek_clips_per_s": clips_per_second(seek_path, files, args.clips, args.frames, args.size),
        "whole_clips_per_s": clips_per_second(
            whole_file_path, files, args.whole_clips, args.frames, args.size
        ),
    }
    results["speedup"] = results["seek_clips_per_s"] / results["whole_clips_per_s"]
    if args.reencoded:
        small = [reencode_video(data, size=args.size, fps=8.0) for data in files]
        results["seek_reencoded_clips_per_s"] = clips_per_second(
            seek_path, small, args.clips, args.frames, args.size
        )
    with tempfile.TemporaryDirectory() as folder:
        shard = write_shard(paths, Path(folder))
        for workers in args.workers:
            results[f"loader_workers{workers}_clips_per_s"] = loader_clips_per_second(
                shard, workers, args.loader_clips, args.frames, args.size
            )
    step, batch = tiny_step_seconds()
    results["tiny_step_s"] = step
    results["tiny_step_clips_per_s"] = batch / step
    print(f"files: {', '.join(p.name for p in paths)}")
    print(json.dumps({k: round(v, 3) for k, v in results.items()}, indent=2))


if __name__ == "__main__":
    main()
