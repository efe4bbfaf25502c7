"""Generate videos from a trained W.A.L.T checkpoint, in every conditioning mode.

    python -m walt.generate CKPT --out DIR [--mode sample|image|predict|interpolate|extend]
        [--sr SR1.ckpt [--sr SR2.ckpt]] [--sr-noise-level X ...]
        [--labels 0,3 | --per-class 2 | --num-samples 4] [--text-embeddings FILE |
        --prompts FILE --text-encoder DIR] [--image PNG] [--video MP4] [--keyframes 0,-1 |
        --keyframe-every 2] [--num-chunks 4] [--num-frames T] [--size HxW] [--fps 8]
        [--sampler ddim] [--num-inference-steps 50] [--guidance-scale 4]
        [--frame-guidance-scale 2] [--png-frames] [--seed 0]
    python -m walt.generate --mode upscale --video LOWRES.mp4 --sr SR1.ckpt [--sr SR2.ckpt]
        --out DIR [--size HxW] [--num-frames N]
    python -m walt.generate --from-settings DIR/settings.json --out DIR2

A thin layer over :class:`walt.pipelines.VideoPipeline` (see ``docs/generation.md``). Sampling
flags left out keep the values the checkpoint was trained with. Writes per clip an mp4 and a gif
(PNG frames with ``--png-frames``), a contact sheet, ``settings.json`` (the exact settings, for
``--from-settings``) and, except in ``extend`` and ``upscale`` modes, ``samples.pt`` (the pixels,
for scoring); then prints the folder. ``--sr`` adds super-resolution stages (the cascade, W.A.L.T
Sec. 4.5): each doubles the height and width, and the clips are written at the top size.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from walt.core.loading import load_walt_checkpoint
from walt.lightning import WALTModule
from walt.pipelines import MODES, GenerationSettings, VideoPipeline
from walt.pipelines.outputs import prepare_output_folder
from walt.samplers import sampler_names
from walt.samplers.guidance import GUIDANCE_SCHEDULES


def load_module(ckpt: str | Path, *, device: str = "cpu", **overrides: Any) -> WALTModule:
    """Load a WALTModule from a Lightning checkpoint: no unpickling, and only registered classes
    (``common.registry``) are built; the checkpoint cannot make this import a module.

    ``overrides`` replace saved constructor arguments (e.g. ``guidance_rescale=0.7``).
    """
    return load_walt_checkpoint(ckpt, map_location=device, **overrides).eval()


def add_sampling_flags(parser: argparse.ArgumentParser) -> None:
    """``--num-inference-steps``, ``--sampler``, ``--sampler-options`` and ``--*guidance-*``."""
    default = "(default: the checkpoint's)"
    parser.add_argument("--num-inference-steps", type=int, help=f"sampler steps {default}")
    parser.add_argument("--sampler", choices=sampler_names(), help=f"sampler {default}")
    example = """'{"eta": 0.5}'"""
    parser.add_argument(
        "--sampler-options", type=json.loads, help=f"sampler options as JSON ({example}) {default}"
    )
    parser.add_argument("--guidance-scale", type=float,
                        help=f"classifier-free guidance scale over label/text {default}")
    parser.add_argument(
        "--guidance-schedule", choices=GUIDANCE_SCHEDULES, help=f"guidance schedule {default}"
    )
    parser.add_argument("--guidance-min-scale", type=float, help=f"schedule start {default}")
    parser.add_argument("--guidance-rescale", type=float, help=f"guidance rescale {default}")
    parser.add_argument("--frame-guidance-scale", type=float,
                        help=f"guidance over the frame condition c_fp (W.A.L.T App. A) {default}")


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _size(text: str) -> list[int]:
    h, _, w = text.lower().partition("x")
    return [int(h), int(w or h)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ckpt", nargs="?",
                        help="Lightning checkpoint of the base WALTModule (none for upscale)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--from-settings", help="settings.json of an earlier run to regenerate")
    parser.add_argument("--mode", choices=MODES, default="sample", help="conditioning mode")
    parser.add_argument("--labels", type=_ints, help="comma-separated class indices (-1 = null)")
    parser.add_argument("--per-class", type=int, default=2,
                        help="clips per class when --labels is not given")
    parser.add_argument("--num-samples", type=int, default=4, help="clips for unconditional models")
    parser.add_argument("--text-embeddings",
                        help="precomputed prompt embeddings (.safetensors or .npy)")
    parser.add_argument("--prompts", help="text file, one prompt per line (needs --text-encoder)")
    parser.add_argument("--text-encoder", help="local folder of the text encoder")
    parser.add_argument("--image", help="conditioning image (modes image and extend)")
    parser.add_argument("--video",
                        help="conditioning video (predict, interpolate, extend); the low-res "
                        "video to upscale (upscale)")
    parser.add_argument("--sr", dest="sr_checkpoints", action="append", metavar="CKPT",
                        help="a super-resolution stage (checkpoint or export), repeat for more: "
                        "each doubles H and W")
    parser.add_argument("--sr-noise-level", dest="sr_noise_levels", action="append", type=float,
                        metavar="X", help="noise level of the SR stages' low-res input: once for "
                        "all or once per --sr (default: each stage's own)")
    parser.add_argument("--keyframes", type=_ints,
                        help="known latent frames for interpolate, e.g. 0,1,-2,-1")
    parser.add_argument("--keyframe-every", type=int,
                        help="interpolate: every k-th latent frame (and the last) is known")
    parser.add_argument("--num-chunks", type=int, default=4, help="chunks of an extend run")
    parser.add_argument("--num-frames", type=int, help="pixel frames per clip or chunk, 1 + 4k "
                        "(default: the training length); upscale: frames to take (default all)")
    parser.add_argument("--size", type=_size, help="HxW of the base clips (default: training "
                        "size); upscale: of the input video after resize and crop (default its own)")
    parser.add_argument("--fps", type=float,
                        help="frame rate: the condition of fps-conditioned models and the files' "
                        "(default 8; upscale: the video's)")
    add_sampling_flags(parser)
    parser.add_argument("--batch-size", type=int, default=8, help="clips sampled together")
    parser.add_argument("--seed", type=int, default=0, help="seed of the run")
    parser.add_argument("--png-frames", action="store_true", help="also write every frame as PNG")
    parser.add_argument("--overwrite", action="store_true",
                        help="--out holds an earlier run: remove that run's files first")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser


def settings_from_args(args: argparse.Namespace) -> GenerationSettings:
    if args.from_settings:
        return GenerationSettings.load(args.from_settings)
    if not args.ckpt and args.mode != "upscale":
        raise SystemExit("give a checkpoint or --from-settings")
    prompts = Path(args.prompts).read_text().splitlines() if args.prompts else None
    names = [f.name for f in GenerationSettings.__dataclass_fields__.values()]
    values = {k: getattr(args, k) for k in names if hasattr(args, k)}
    return GenerationSettings(**{**values, "checkpoint": args.ckpt, "prompts": prompts})


def main(argv: list[str] | None = None) -> Path:
    args = build_parser().parse_args(argv)
    settings = settings_from_args(args)
    prepare_output_folder(args.out, overwrite=args.overwrite)
    pipe = VideoPipeline.from_settings(settings, device=args.device)
    inputs = pipe.module.inputs if pipe.module is not None else None
    if inputs is not None and inputs.labels and not settings.labels:
        settings.labels = [c for c in range(inputs.num_classes) for _ in range(args.per_class)]
    out = pipe(settings, args.out, png_frames=args.png_frames, progress=not args.no_progress)
    print(out)
    return out


if __name__ == "__main__":
    main()
