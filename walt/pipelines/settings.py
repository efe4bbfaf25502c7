"""The exact settings of one generation run, saved beside its outputs so any clip can be
regenerated (``python -m walt.generate --from-settings settings.json``)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from common.atomic import atomic_open

MODES = ("sample", "image", "predict", "interpolate", "extend")


@dataclass
class GenerationSettings:
    """Everything that decides the pixels of a run.

    Args:
        checkpoint: the WALTModule checkpoint.
        mode: ``sample`` (class, unconditional or text), ``image`` (image to video), ``predict``
            (video prediction from 5 frames), ``interpolate`` (keyframes) or ``extend`` (long
            video by autoregressive extension).
        seed: seed of the one generator drawing every sample of the run.
        labels: class index per clip (class-conditional models).
        num_samples: clips for unconditional models.
        prompts, text_embeddings, text_encoder: text prompts (embedded by the local encoder at
            ``text_encoder``) or a file of precomputed embeddings (one clip per row).
        image, video: the conditioning image (``image``, ``extend``) or video (``predict``,
            ``interpolate``, ``extend``).
        keyframes: latent frame indices known in ``interpolate`` (negative count from the end).
        keyframe_every: or every k-th latent frame (and the last one) known.
        num_chunks: chunks of an ``extend`` run.
        num_frames, size: pixel frames T and (H, W) of a clip (one chunk in ``extend``).
        fps: the clip's frame rate: the condition of fps-conditioned models, and the files' rate.
        sampler, sampler_options, num_inference_steps: the sampler.
        guidance_scale, guidance_schedule, guidance_min_scale, guidance_rescale: label/text
            classifier-free guidance.
        frame_guidance_scale: guidance over the frame condition ``c_fp`` (W.A.L.T App. A).
        batch_size: clips sampled together.
    """

    checkpoint: str
    mode: str = "sample"
    seed: int = 0
    labels: list[int] | None = None
    num_samples: int = 4
    prompts: list[str] | None = None
    text_embeddings: str | None = None
    text_encoder: str | None = None
    image: str | None = None
    video: str | None = None
    keyframes: list[int] | None = None
    keyframe_every: int | None = None
    num_chunks: int = 4
    num_frames: int | None = None
    size: list[int] | None = None
    fps: float = 8.0
    sampler: str | None = None
    sampler_options: dict[str, Any] | None = None
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    guidance_schedule: str | None = None
    guidance_min_scale: float | None = None
    guidance_rescale: float | None = None
    frame_guidance_scale: float | None = None
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.num_chunks < 1:
            raise ValueError(f"num_chunks must be >= 1, got {self.num_chunks}")
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if self.mode in ("predict", "interpolate") and not self.video:
            raise ValueError(f"mode {self.mode!r} needs video")
        if self.mode == "image" and not self.image:
            raise ValueError("mode 'image' needs image")
        if self.mode == "interpolate" and not (self.keyframes or self.keyframe_every):
            raise ValueError("mode 'interpolate' needs keyframes or keyframe_every")

    def save(self, path: str | Path) -> Path:
        """Write the settings as JSON, atomically."""
        with atomic_open(path, "w") as f:
            json.dump(asdict(self), f, indent=2)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> GenerationSettings:
        data = json.loads(Path(path).read_text())
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"{path}: unknown settings {sorted(unknown)}")
        return cls(**data)
