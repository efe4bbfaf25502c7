"""Generate videos from a trained W.A.L.T checkpoint, in every conditioning mode.

    python -m walt.generate CKPT --out DIR [--mode sample|image|predict|interpolate|extend]
        [--sr SR1.ckpt [--sr SR2.ckpt]] [--noise-level X ...]
        [--labels 0,3 | --per-class 2 | --num-samples 4] [--text-embeddings FILE |
        --prompts FILE --text-encoder DIR] [--image PNG] [--video MP4] [--keyframes 0,-1 |
        --keyframe-every 2] [--num-chunks 4] [--num-frames T] [--size HxW] [--fps 8]
        [--sampler ddim] [--sampler-options JSON] [--num-inference-steps 50]
        [--guidance-scale 4] [--guidance-schedule linear] [--guidance-min-scale 1]
        [--guidance-reverse] [--guidance-rescale 0.7] [--frame-guidance-scale 2]
        [--png-frames] [--seed 0]
    python -m walt.generate --mode upscale --video LOWRES.mp4 --sr SR1.ckpt [--sr SR2.ckpt]
        --out DIR [--size HxW] [--num-frames N]
    python -m walt.generate --from-settings DIR/settings.json --out DIR2

A thin layer over :class:`walt.pipelines.VideoPipeline` (see ``docs/generation.md``). Each
sampling flag changes one field of the checkpoint's ``SamplingConfig`` (``--noise-level``: of the
SR stages'); flags left out keep the checkpoint's values. Writes per clip an mp4 and a gif
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

from common.cli_types import finite_float, positive_float, positive_int
from walt.core.sampling import SamplingConfig
from walt.pipelines import MODES, GenerationSettings, VideoPipeline
from walt.pipelines.outputs import prepare_output_folder
from walt.samplers import sampler_names
from walt.samplers.guidance import GUIDANCE_SCHEDULES

# The base's sampling flags: one per SamplingConfig field (``--noise-level`` sets the SR stages').
SAMPLING_FLAGS = tuple(name for name in SamplingConfig.__dataclass_fields__ if name != "noise_level")


def add_sampling_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per field of ``SamplingConfig`` (the base's), each left out by default."""
    default = "(default: the checkpoint's)"
    parser.add_argument("--sampler", choices=sampler_names(), help=f"sampler {default}")
    example = """'{"eta": 0.5}'"""
    parser.add_argument("--sampler-options", type=_json_object,
                        help=f"the sampler's own options as a JSON object ({example}) {default}")
    parser.add_argument("--num-inference-steps", type=positive_int, help=f"sampler steps {default}")
    parser.add_argument("--guidance-scale", type=finite_float,
                        help=f"classifier-free guidance scale over label/text {default}")
    parser.add_argument(
        "--guidance-schedule", choices=GUIDANCE_SCHEDULES, help=f"guidance schedule {default}"
    )
    parser.add_argument("--guidance-min-scale", type=finite_float, help=f"schedule start {default}")
    parser.add_argument("--guidance-reverse", action=argparse.BooleanOptionalAction,
                        help=f"run a non-constant schedule from the scale down {default}")
    parser.add_argument("--guidance-rescale", type=finite_float, help=f"guidance rescale {default}")
    parser.add_argument("--frame-guidance-scale", type=finite_float,
                        help=f"guidance over the frame condition c_fp (W.A.L.T App. A) {default}")


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object such as '{{\"eta\": 0.5}}', "
                                         f"got {text!r}")
    return value


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _size(text: str) -> list[int]:
    h, _, w = text.lower().partition("x")
    size = [int(h), int(w or h)]
    if min(size) < 1:
        raise argparse.ArgumentTypeError(f"sides must be >= 1, got {text!r}")
    return size


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ckpt", nargs="?",
                        help="checkpoint or walt.export model folder of the base WALTModule "
                        "(none for upscale)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--from-settings", help="settings.json of an earlier run to regenerate")
    parser.add_argument("--mode", choices=MODES, default="sample", help="conditioning mode")
    parser.add_argument("--labels", type=_ints, help="comma-separated class indices (-1 = null)")
    parser.add_argument("--per-class", type=positive_int, default=2,
                        help="clips per class when --labels is not given")
    parser.add_argument("--num-samples", type=positive_int, default=4, help="clips for unconditional models")
    parser.add_argument("--text-embeddings",
                        help="precomputed prompt embeddings (.safetensors or .npy)")
    parser.add_argument("--prompts", help="text file, one prompt per line (needs --text-encoder)")
    parser.add_argument("--text-encoder", help="local folder of the text encoder")
    parser.add_argument("--image", help="conditioning image (modes image and extend)")
    parser.add_argument("--video",
                        help="conditioning video (predict, interpolate, extend); the low-res "
                        "video to upscale (upscale)")
    parser.add_argument("--sr", dest="sr_checkpoints", action="append", metavar="CKPT",
                        help="a super-resolution stage (checkpoint, model folder or export), repeat for more: "
                        "each doubles H and W")
    parser.add_argument("--noise-level", action="append", type=finite_float, metavar="X",
                        help="noise level of the SR stages' low-res input, in [0, 1]: once for "
                        "all or once per --sr (default: each stage's own)")
    parser.add_argument("--keyframes", type=_ints,
                        help="known latent frames for interpolate, e.g. 0,1,-2,-1")
    parser.add_argument("--keyframe-every", type=int,
                        help="interpolate: every k-th latent frame (and the last) is known")
    parser.add_argument("--num-chunks", type=positive_int, default=4, help="chunks of an extend run")
    parser.add_argument("--num-frames", type=positive_int, help="pixel frames per clip or chunk, 1 + 4k "
                        "(default: the training length); upscale: frames to take (default all)")
    parser.add_argument("--size", type=_size, help="HxW of the base clips (default: training "
                        "size); upscale: of the input video after resize and crop (default its own)")
    parser.add_argument("--fps", type=positive_float,
                        help="frame rate: the condition of fps-conditioned models and the files' "
                        "(default 8; upscale: the video's)")
    add_sampling_flags(parser)
    parser.add_argument("--batch-size", type=positive_int, default=8, help="clips sampled together")
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
        raise ValueError("give a checkpoint or --from-settings")
    prompts = Path(args.prompts).read_text().splitlines() if args.prompts else None
    names = [f.name for f in GenerationSettings.__dataclass_fields__.values()]
    values = {k: getattr(args, k) for k in names if hasattr(args, k)}
    sampling = {k: getattr(args, k) for k in SAMPLING_FLAGS if getattr(args, k) is not None}
    if args.noise_level and not args.sr_checkpoints:
        raise ValueError("--noise-level sets the level of the SR stages' low-res input: give "
                         "the stages with --sr")
    sr_sampling = [{"noise_level": v} for v in args.noise_level] if args.noise_level else None
    return GenerationSettings(**{**values, "checkpoint": args.ckpt, "prompts": prompts,
                                 "sampling": sampling or None, "sr_sampling": sr_sampling})


def main(argv: list[str] | None = None) -> Path:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args)
    except ValueError as err:  # a bad flag value or combination: exit 2 with argparse's usage
        parser.error(str(err))
    prepare_output_folder(args.out, overwrite=args.overwrite)
    pipe = VideoPipeline.from_settings(settings, device=args.device)
    inputs = pipe.module.inputs if pipe.module is not None else None
    if inputs is not None and inputs.labels and not settings.labels:
        settings.labels = [c for c in range(inputs.num_classes) for _ in range(args.per_class)]
    try:
        settings = pipe.resolve(settings)  # every sampling option checked against the models
    except ValueError as err:
        parser.error(str(err))
    out = pipe(settings, args.out, png_frames=args.png_frames, progress=not args.no_progress)
    print(out)
    return out


if __name__ == "__main__":
    main()
