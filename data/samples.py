"""Turn one raw webdataset sample (a dict of bytes per extension) into tensors, and batch them.

Field names are the shard format documented in docs/data.md: media under its extension,
``cls`` / ``txt`` / ``json`` sidecars, and precomputed ``latents.*``, ``text_emb.*``,
``text_mask.*`` and (super-resolution pairs) ``lowres_latents.*`` arrays (``.npy`` or
``.safetensors``).
"""

from __future__ import annotations

import io
import json
import random
import re
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from safetensors.numpy import load as load_safetensors

from data.decode import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    ShortClip,
    decode_clip,
    decode_image,
)
from data.transforms import draw_zoom, frames_to_pixels

Kind = Literal["video", "image"]
ARRAY_FIELDS: tuple[str, ...] = ("latents", "text_emb", "text_mask", "lowres_latents")
# Dimensions of each array field: latents (c, t, h, w), text_emb (L, E), text_mask (L,).
ARRAY_NDIM: dict[str, int] = {"latents": 4, "text_emb": 2, "text_mask": 1, "lowres_latents": 4}
NO_LABEL = -1  # the batch's label of a sample without ``cls`` (the null label)
_LABEL_MAX = 2**63 - 1  # labels are batched as int64
_DECIMAL = re.compile(r"[+-]?[0-9]+")  # ASCII digits only: int() also takes "1_0" and "٣"


@dataclass(frozen=True)
class SampleSpec:
    """How to turn a raw sample into tensors (one per stream).

    Attributes:
        kind: "video" or "image"; samples of the other kind are routed away (not errors).
        num_frames: clip length T for videos.
        size: output ``(H, W)``.
        frame_stride: source-frame stride (exclusive with ``target_fps``); a tuple of choices
            is drawn from per training clip (validation takes the first).
        target_fps: wanted frame rate; the stride is rounded to an integer.
        short_clip: "skip" or "loop" for videos shorter than the clip.
        train: random clip start and random crop when True; centred otherwise.
        load_pixels: decode media; when False only precomputed arrays are read.
        max_pixels: pixels per frame above which media is skipped before decoding (``None``:
            no cap).
        zoom: training zoom range ``(low, high)``: each training sample is scaled to cover
            ``z x size``, ``z ~ U(low, high)``, before its random crop (``None``: no zoom).
        zoom_choices: training zoom set: ``z`` is drawn uniformly from it instead (exclusive
            with ``zoom``).
        num_classes: labels must lie in ``[-1, num_classes)``; a sample outside is a bad sample
            (``None`` or ``0``, a model without labels: any label from -1 up that fits int64).
        latent_shape: the ``(t, h, w)`` that latents of ``num_frames`` frames at ``size`` have;
            latents of another shape are reported once per reader (``None``: not checked).
    """

    kind: Kind
    num_frames: int
    size: tuple[int, int]
    frame_stride: int | tuple[int, ...] | None
    target_fps: float | None
    short_clip: ShortClip
    train: bool
    load_pixels: bool
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    zoom: tuple[float, float] | None = None
    zoom_choices: tuple[float, ...] | None = None
    num_classes: int | None = None
    latent_shape: tuple[int, int, int] | None = None


class ArrayShapes:
    """The shapes of the precomputed arrays one reader has decoded, so a batch never mixes two.

    The first sample's shape of each field is the reference; a later sample whose array has
    another shape is a bad sample (it would fail the batch's stack). When the first latents
    disagree with ``spec.latent_shape``, ``note`` says so once, for the reader to warn.

    Args:
        expected_latents: ``(t, h, w)`` the data settings imply, or ``None``.
    """

    def __init__(self, *, expected_latents: tuple[int, int, int] | None) -> None:
        self.expected_latents = expected_latents
        self.reference: dict[str, tuple[int, ...]] = {}
        self.note: str | None = None

    def check(self, field: str, array: np.ndarray) -> None:
        """Raise ValueError when ``array`` has another shape than the reference of ``field``."""
        shape = tuple(array.shape)
        first = field not in self.reference
        reference = self.reference.setdefault(field, shape)
        if shape != reference:
            raise ValueError(
                f"{field} has shape {shape} but the earlier samples of this reader have "
                f"{reference}; a batch cannot mix them"
            )
        expected = self.expected_latents
        if first and field == "latents" and expected is not None and shape[1:] != expected:
                self.note = (
                    f"latents of shape {shape} (t, h, w = {shape[1:]}) but num_frames and size "
                    f"give latents (t, h, w) = {expected} (with a 4x temporal, 8x spatial "
                    "tokenizer): were these shards precomputed at another num_frames / size?"
                )


def media_field(sample: dict[str, Any], extensions: tuple[str, ...]) -> str | None:
    """The sample's first field whose extension is one of ``extensions``."""
    for name in sample:
        if not name.startswith("__") and name.lower() in extensions:
            return name
    return None


def route(sample: dict[str, Any], kind: Kind) -> Literal["mine", "other", "none"]:
    """Whether a sample belongs to the ``kind`` stream, to the other stream, or has no media.

    A sample with a video field is a video (even with a thumbnail image beside it). A sample
    with only precomputed arrays goes by ``json["kind"]`` ("video" when absent).
    """
    if media_field(sample, VIDEO_EXTENSIONS) is not None:
        found = "video"
    elif media_field(sample, IMAGE_EXTENSIONS) is not None:
        found = "image"
    elif _has_arrays(sample):
        try:
            found = parse_meta(sample).get("kind", "video")
        except ValueError:
            # The kind cannot be told: every stream reading the sample keeps it, and its
            # decode_sample raises, so it is counted as a bad sample (like a media-less one).
            return "mine"
    else:
        return "none"
    return "mine" if found == kind else "other"


def parse_meta(sample: dict[str, Any]) -> dict[str, Any]:
    """The sample's ``json`` member as a dict (``{}`` when absent); ValueError when malformed."""
    if "json" not in sample:
        return {}
    try:
        meta = json.loads(_text(sample, "json"))
    except ValueError as error:
        raise ValueError(f"malformed json member: {error}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"malformed json member: must hold an object, got {type(meta).__name__}")
    return meta


def decode_sample(
    sample: dict[str, Any], spec: SampleSpec, rng: random.Random,
    shapes: ArrayShapes | None = None,
) -> dict[str, Any]:
    """Decode one sample of ``spec.kind``; raises (naming the problem) on bad media or fields.

    Every field is checked here (label range and type, array dtypes, dimensions, finiteness and,
    with ``shapes``, shapes against the reader's earlier samples), so a batch is never built
    from a sample that would break it.
    """
    out: dict[str, Any] = {
        "key": sample["__key__"],
        "label": _label(sample, spec.num_classes),
        "caption": _text(sample, "txt").strip() if "txt" in sample else "",
        "fps": 0.0,
        "stride": 1,
    }
    meta = parse_meta(sample)
    out["meta"] = meta
    for field in ARRAY_FIELDS:
        array = _array(sample, field)
        if array is not None:
            if shapes is not None:
                shapes.check(field, array)
            out[field] = array
    if not spec.load_pixels:
        if "latents" not in out:
            raise ValueError("load_pixels=False but the sample has no latents.npy/.safetensors")
        if spec.kind == "video":
            try:
                out["fps"] = float(meta.get("fps", 0.0))
                out["stride"] = int(meta.get("stride", 1))
            except (TypeError, ValueError) as error:
                raise ValueError(f"malformed json member: fps/stride: {error}") from None
        return out
    crop = "random" if spec.train else "center"
    zoom = draw_zoom(spec.zoom, rng, choices=spec.zoom_choices) if spec.train else 1.0
    if spec.kind == "image":
        image = sample[_require(sample, IMAGE_EXTENSIONS)]
        frames = decode_image(image, max_pixels=spec.max_pixels)[None]
        out["pixels"] = frames_to_pixels(frames, size=spec.size, crop=crop, rng=rng, zoom=zoom)
        return out
    clip = decode_clip(
        sample[_require(sample, VIDEO_EXTENSIONS)],
        num_frames=spec.num_frames,
        frame_stride=_stride(spec, rng),
        target_fps=spec.target_fps,
        clip_start="random" if spec.train else "center",
        short_clip=spec.short_clip,
        rng=rng,
        max_pixels=spec.max_pixels,
    )
    out["pixels"] = frames_to_pixels(clip.frames, size=spec.size, crop=crop, rng=rng, zoom=zoom)
    out["fps"], out["stride"] = clip.fps, clip.stride
    return out


def _stride(spec: SampleSpec, rng: random.Random) -> int | None:
    if not isinstance(spec.frame_stride, tuple):
        return spec.frame_stride
    return rng.choice(spec.frame_stride) if spec.train else spec.frame_stride[0]


def collate(samples: list[dict[str, Any]], skipped: int) -> dict[str, Any]:
    """Stack decoded samples into a stream batch (see the batch table in docs/CONVENTIONS.md)."""
    batch: dict[str, Any] = {
        "label": torch.tensor([s["label"] for s in samples], dtype=torch.long),
        "caption": [s["caption"] for s in samples],
        "fps": torch.tensor([s["fps"] for s in samples], dtype=torch.float32),
        "stride": torch.tensor([s["stride"] for s in samples], dtype=torch.long),
        "key": [s["key"] for s in samples],
        "meta": [s["meta"] for s in samples],
        "skipped": torch.tensor([skipped], dtype=torch.long),
    }
    for field in ("pixels", *ARRAY_FIELDS):
        present = [field in s for s in samples]
        if any(present) and not all(present):
            missing = [s["key"] for s in samples if field not in s]
            raise ValueError(f"field {field!r} is missing from samples {missing} but not others")
        if all(present):
            batch[field] = _stack(field, [s[field] for s in samples], batch["key"])
    return batch


def _stack(field: str, values: list[Any], keys: list[str]) -> torch.Tensor:
    tensors = [torch.as_tensor(v) for v in values]
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) > 1:
        raise ValueError(f"field {field!r} has differing shapes {sorted(shapes)} in samples {keys}")
    stacked = torch.stack(tensors)
    if field == "text_mask":
        return stacked.bool()
    return stacked if field == "pixels" else stacked.float()


def _has_arrays(sample: dict[str, Any]) -> bool:
    return any(name.split(".")[0] == "latents" for name in sample)


def _require(sample: dict[str, Any], extensions: tuple[str, ...]) -> str:
    field = media_field(sample, extensions)
    if field is None:
        raise ValueError(f"no media field among {extensions}; fields are {sorted(sample)}")
    return field


def _text(sample: dict[str, Any], field: str) -> str:
    value = sample[field]
    if isinstance(value, str):
        return value
    try:
        return bytes(value).decode("utf-8")
    except (TypeError, UnicodeDecodeError) as error:
        raise ValueError(f"malformed {field} member: not UTF-8 text ({error})") from None


def _label(sample: dict[str, Any], num_classes: int | None) -> int:
    """The ``cls`` member as a class index in ``[-1, num_classes)`` (``-1``: no label)."""
    if "cls" not in sample:
        return NO_LABEL
    text = _text(sample, "cls").strip()
    if not _DECIMAL.fullmatch(text):
        raise ValueError(
            f"malformed cls member: must be a decimal integer, got {text[:40]!r}"
        )
    label = int(text)
    high = num_classes - 1 if num_classes else _LABEL_MAX  # 0: the model takes no labels
    if not NO_LABEL <= label <= high:
        limit = f"num_classes={num_classes}" if num_classes else "int64"
        raise ValueError(
            f"malformed cls member: class {text[:40]} is outside [{NO_LABEL}, {high}] ({limit})"
        )
    return label


def _array(sample: dict[str, Any], field: str) -> np.ndarray | None:
    """The field's array, checked: its dimensions, a float dtype (bool or integer for
    ``text_mask``) and finite values; floats come back as float32, masks as bool."""
    array = _load_array(sample, field)
    if array is None:
        return None
    if array.ndim != ARRAY_NDIM[field]:
        raise ValueError(
            f"{field} must have {ARRAY_NDIM[field]} dimensions, got shape {tuple(array.shape)}"
        )
    if field == "text_mask":
        if array.dtype.kind not in "biu":
            raise ValueError(f"text_mask must be bool or integer, got dtype {array.dtype}")
        return array.astype(bool)
    if array.dtype.kind != "f":
        raise ValueError(f"{field} must be a float array, got dtype {array.dtype}")
    if not np.isfinite(array).all():
        raise ValueError(f"{field} holds NaN or infinite values")
    return array.astype(np.float32, copy=False)


def _load_array(sample: dict[str, Any], field: str) -> np.ndarray | None:
    if f"{field}.npy" in sample:
        return np.load(io.BytesIO(sample[f"{field}.npy"]), allow_pickle=False)
    if f"{field}.safetensors" in sample:
        tensors = load_safetensors(sample[f"{field}.safetensors"])
        if field in tensors:
            return tensors[field]
        if len(tensors) == 1:
            return next(iter(tensors.values()))
        raise ValueError(f"{field}.safetensors holds {sorted(tensors)}, expected a tensor {field!r}")
    return None
