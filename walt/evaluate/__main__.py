"""Evaluate generated videos and images: FVD, FID, IS, PSNR / SSIM and long-video drift.

    python -m walt.evaluate fvd GENERATED REFERENCE --i3d i3d_torchscript.pt [--json OUT]
    python -m walt.evaluate fid GENERATED REFERENCE --inception inception-2015-12-05.pt
    python -m walt.evaluate is GENERATED --inception inception-2015-12-05.pt
    python -m walt.evaluate psnr GENERATED REFERENCE --task prediction --context-frames 5
    python -m walt.evaluate drift VIDEO_OR_FOLDER --chunk-frames N [--seam-overlap K]
    python -m walt.evaluate sr SR_CHECKPOINT REFERENCE [--noise-level X] [--sheet OUT.png]

GENERATED and REFERENCE are folders of videos / images or webdataset shards (path or brace
pattern). Metrics over sets are reported as mean ± std over ``--num-draws`` random subsets of
``--draw-size`` samples (seeded by ``--seed``). ``--json OUT`` writes every number. See
docs/evaluate.md.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from common.cli_types import non_negative_int, positive_int, unit_float
from walt.core.loading import load_walt_module
from walt.evaluate.draws import frechet_draws
from walt.evaluate.drift import drift
from walt.evaluate.features import I3DFeatures, InceptionFeatures, load_torchscript
from walt.evaluate.fvd import FVD_FRAMES, fvd_features
from walt.evaluate.image_metrics import image_features, inception_score_draws
from walt.evaluate.inputs import MediaItem, iter_media, read_frames, readable_media
from walt.evaluate.reconstruction import TASKS, reconstruction_draws, score_folder
from walt.evaluate.report import format_value, print_table, write_json
from walt.evaluate.super_resolution import evaluate_super_resolution, mean_gain


def _draw_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--num-draws", type=positive_int, default=1, help="random draws (default 1)")
    parser.add_argument(
        "--draw-size",
        type=positive_int,
        default=None,
        help="samples per draw (default: all usable samples)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of draws and clip starts")


def _network_options(parser: argparse.ArgumentParser, flag: str, what: str) -> None:
    parser.add_argument(flag, required=True, help=f"{what} TorchScript file (local path)")
    parser.add_argument(
        "--size",
        type=positive_int,
        default=None,
        help="cover-resize and centre-crop to SIZE x SIZE first (default: as stored)",
    )
    parser.add_argument(
        "--max-items",
        type=positive_int,
        default=None,
        help="use at most this many files / samples of each source",
    )
    parser.add_argument("--batch-size", type=positive_int, default=8)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m walt.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    fvd = sub.add_parser("fvd", help="Fréchet Video Distance (StyleGAN-V fvd2048_16f protocol)")
    fvd.add_argument("generated")
    fvd.add_argument("reference")
    _network_options(fvd, "--i3d", "StyleGAN-V I3D")
    fvd.add_argument("--num-frames", type=positive_int, default=FVD_FRAMES)
    fid = sub.add_parser("fid", help="Fréchet Inception Distance of images / video frames")
    fid.add_argument("generated")
    fid.add_argument("reference")
    inception = sub.add_parser("is", help="Inception Score of images / video frames")
    inception.add_argument("generated")
    for p in (fid, inception):
        _network_options(p, "--inception", "Inception")
        p.add_argument(
            "--num-frames",
            type=positive_int,
            default=16,
            help="frames taken from the start of each video (default 16)",
        )
    psnr = sub.add_parser("psnr", help="PSNR and SSIM against ground truth paired by key")
    psnr.add_argument("generated")
    psnr.add_argument("reference")
    psnr.add_argument("--task", choices=TASKS, default="reconstruction")
    psnr.add_argument("--context-frames", type=non_negative_int, default=0, help="given frames (prediction)")
    psnr.add_argument(
        "--keyframe-every", type=non_negative_int, default=0, help="key-frame spacing (interpolation)"
    )
    psnr.add_argument("--size", type=positive_int, default=None)
    for p in (fvd, fid, inception, psnr):
        _draw_options(p)
    drifting = sub.add_parser("drift", help="per-chunk colour statistics and seam ratios")
    drifting.add_argument("video", help="a video file or a folder of them")
    drifting.add_argument(
        "--chunk-frames",
        type=positive_int,
        required=True,
        help="new frames per autoregressive chunk (N)",
    )
    drifting.add_argument(
        "--seam-overlap",
        type=non_negative_int,
        default=0,
        help="context frames of each extension (K); the first chunk has K + N",
    )
    upscale = sub.add_parser(
        "sr", help="a super-resolution stage against bicubic upsampling, on ground-truth clips"
    )
    upscale.add_argument("checkpoint", help="the SR stage's checkpoint or walt.export model folder")
    upscale.add_argument("reference", help="ground-truth videos at the stage's resolution")
    upscale.add_argument("--num-clips", type=positive_int, default=32)
    upscale.add_argument("--batch-size", type=positive_int, default=8)
    upscale.add_argument(
        "--noise-level", type=unit_float, default=None,
        help="noise-conditioning level in [0, 1] (default: the stage's own)",
    )
    upscale.add_argument("--num-inference-steps", type=positive_int, default=None)
    upscale.add_argument("--sheet", default=None, help="contact sheet PNG: low-res|bicubic|SR|GT")
    upscale.add_argument("--seed", type=int, default=0)
    upscale.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    for p in sub.choices.values():
        p.add_argument("--json", default=None, help="write the results as JSON here")
    return parser


def _network(args: argparse.Namespace, path: str, name: str) -> tuple[torch.jit.ScriptModule, dict]:
    net, sha256 = load_torchscript(path, device=args.device, name=name)
    print(f"{name}: {path}  sha256 {sha256}")
    return net, {"path": str(path), "sha256": sha256}


def run_fvd(args: argparse.Namespace) -> tuple[dict, list[tuple[str, str]]]:
    net, info = _network(args, args.i3d, "i3d")
    i3d = I3DFeatures(net=net, device=args.device)
    common = dict(
        num_frames=args.num_frames,
        seed=args.seed,
        size=args.size,
        max_items=args.max_items,
        batch_size=args.batch_size,
    )
    gen_keys, gen = fvd_features(
        args.generated, i3d, random_start=False, name="generated", **common
    )
    ref_keys, ref = fvd_features(args.reference, i3d, random_start=True, name="reference", **common)
    fvd = frechet_draws(
        gen, ref, draw_size=args.draw_size, num_draws=args.num_draws, seed=args.seed
    )
    result = {
        "fvd": fvd,
        "network": info,
        "num_frames": args.num_frames,
        "num_generated": len(gen_keys),
        "num_reference": len(ref_keys),
    }
    return result, [
        (f"FVD ({args.num_frames} frames)", format_value(fvd)),
        ("videos", f"{len(gen_keys)} generated, {len(ref_keys)} reference"),
    ]


def run_fid(args: argparse.Namespace) -> tuple[dict, list[tuple[str, str]]]:
    net, info = _network(args, args.inception, "inception")
    inception = InceptionFeatures(net=net, device=args.device)
    common = dict(
        num_frames=args.num_frames,
        size=args.size,
        max_items=args.max_items,
        batch_size=args.batch_size,
    )
    gen_keys, gen = image_features(args.generated, inception.features, name="generated", **common)
    ref_keys, ref = image_features(args.reference, inception.features, name="reference", **common)
    fid = frechet_draws(
        gen, ref, draw_size=args.draw_size, num_draws=args.num_draws, seed=args.seed
    )
    result = {
        "fid": fid,
        "network": info,
        "num_generated": len(gen_keys),
        "num_reference": len(ref_keys),
    }
    return result, [
        ("FID", format_value(fid)),
        ("images", f"{len(gen_keys)} generated, {len(ref_keys)} reference"),
    ]


def run_is(args: argparse.Namespace) -> tuple[dict, list[tuple[str, str]]]:
    net, info = _network(args, args.inception, "inception")
    inception = InceptionFeatures(net=net, device=args.device)
    keys, logits = image_features(
        args.generated,
        inception.logits,
        num_frames=args.num_frames,
        size=args.size,
        max_items=args.max_items,
        batch_size=args.batch_size,
        name="generated",
    )
    score = inception_score_draws(
        logits, draw_size=args.draw_size, num_draws=args.num_draws, seed=args.seed
    )
    result = {"is": score, "network": info, "num_generated": len(keys)}
    return result, [("IS", format_value(score)), ("images", str(len(keys)))]


def run_psnr(args: argparse.Namespace) -> tuple[dict, list[tuple[str, str]]]:
    rows = score_folder(
        args.generated,
        args.reference,
        task=args.task,
        context_frames=args.context_frames,
        keyframe_every=args.keyframe_every,
        size=args.size,
    )
    summary = reconstruction_draws(
        rows, draw_size=args.draw_size, num_draws=args.num_draws, seed=args.seed
    )
    result = {"task": args.task, **summary, "videos": rows}
    return result, [
        ("PSNR (dB)", format_value(summary["psnr"])),
        ("SSIM", format_value(summary["ssim"])),
        ("videos", str(len(rows))),
    ]


def _videos(source: str) -> Iterator[MediaItem]:
    """One video file, or the videos of a folder or of shards."""
    path = Path(source)
    if path.is_file() and path.suffix.lower() != ".tar":
        yield MediaItem(key=path.name, kind="video", data=path.read_bytes(), origin=str(path))
        return
    yield from (item for item in iter_media(source, name="video") if item.kind == "video")


def run_drift(args: argparse.Namespace) -> tuple[dict, list[tuple[str, str]]]:
    videos, table = {}, []
    for item, frames in readable_media(_videos(args.video), read_frames, what="drift"):
        path = item.key
        report = drift(frames, chunk_frames=args.chunk_frames, seam_overlap=args.seam_overlap)
        videos[path] = report
        for chunk in report["chunks"]:
            mean = ", ".join(f"{v:.3f}" for v in chunk["mean"])
            table.append(
                (
                    f"{path} chunk {chunk['chunk']} [{chunk['start']}, {chunk['stop']})",
                    f"brightness {chunk['brightness']:.4f}  RGB mean ({mean})",
                )
            )
        for seam in report["seams"]:
            ratio = "n/a" if seam["ratio"] is None else f"{seam['ratio']:.2f}"
            table.append((f"{path} seam {seam['seam']} frames {seam['frames']}", f"ratio {ratio}"))
    if not videos:
        raise ValueError(f"video: no video files found in {args.video}")
    result = {
        "chunk_frames": args.chunk_frames,
        "seam_overlap": args.seam_overlap,
        "videos": videos,
    }
    return result, table


def run_sr(args: argparse.Namespace) -> tuple[dict, list[tuple[str, str]]]:
    module = load_walt_module(args.checkpoint, map_location=args.device).eval()
    # Deterministic DDIM, so the score does not depend on the sampler the stage was trained with.
    changes = {"sampler": "ddim", "sampler_options": {"eta": 0.0}}
    for name in ("num_inference_steps", "noise_level"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    module.sampling = module.checked_sampling(module.sampling.override(changes))
    result = evaluate_super_resolution(
        module, args.reference, num_clips=args.num_clips, batch_size=args.batch_size,
        seed=args.seed, sheet=args.sheet,
    )
    return result, [
        *((name, f"{result[key]['mean']:.4f} ± {result[key]['std']:.4f} over clips")
          for name, key in (("SR PSNR (dB)", "sr_psnr"), ("bicubic PSNR (dB)", "bicubic_psnr"),
                            ("SR SSIM", "sr_ssim"), ("bicubic SSIM", "bicubic_ssim"))),
        ("SR - bicubic (dB)", f"{mean_gain(result):+.2f}"),
        ("clips", str(result["num_clips"])),
        ("noise level", f"{result['noise_level']:.3f}"),
    ]


COMMANDS = {
    "fvd": run_fvd, "fid": run_fid, "is": run_is, "psnr": run_psnr, "drift": run_drift,
    "sr": run_sr,
}


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    result, table = COMMANDS[args.command](args)
    result = {
        "command": args.command,
        **{k: v for k, v in vars(args).items() if k != "command"},
        **result,
    }
    print_table(table, title=f"walt.evaluate {args.command}")
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
