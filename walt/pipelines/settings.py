"""The exact settings of one generation run, saved beside its outputs so any clip can be
regenerated (``python -m walt.generate --from-settings settings.json``)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from common.atomic import atomic_open

MODES = ("sample", "image", "predict", "interpolate", "extend", "upscale")


@dataclass
class GenerationSettings:
    """Everything that decides the pixels of a run.

    Args:
        checkpoint: the base WALTModule checkpoint (none in ``upscale`` mode).
        mode: ``sample`` (class, unconditional or text), ``image`` (image to video), ``predict``
            (video prediction from 5 frames), ``interpolate`` (keyframes), ``extend`` (long
            video by autoregressive extension) or ``upscale`` (the SR stages on ``video``).
        seed: seed of the one generator drawing every sample of the run.
        labels: class index per clip (class-conditional models).
        num_samples: clips for unconditional models.
        prompts, text_embeddings, text_encoder: text prompts (embedded by the local encoder at
            ``text_encoder``) or a file of precomputed embeddings (one clip per row).
        image, video: the conditioning image (``image``, ``extend``) or video (``predict``,
            ``interpolate``, ``extend``); in ``upscale`` the low-resolution video to upscale.
        keyframes: latent frame indices known in ``interpolate`` (negative count from the end).
        keyframe_every: or every k-th latent frame (and the last one) known.
        num_chunks: chunks of an ``extend`` run.
        num_frames, size: pixel frames T and base (H, W) of a clip (one chunk in ``extend``);
            in ``upscale`` the frames taken from ``video`` (default all) and its (H, W) after
            resizing and centre cropping (default its own).
        fps: the clip's frame rate: the condition of fps-conditioned models, and the files' rate
            (default 8, in ``upscale`` the video's).
        sampling: how the base samples (``walt.core.sampling.SamplingConfig``'s fields): before
            a run the fields to change from the checkpoint's, after it (in ``settings.json``)
            the whole resolved config.
        sr_checkpoints: super-resolution stages (checkpoints or exports) run in order after the
            base, each doubling H and W (W.A.L.T Sec. 4.5); the top one decodes.
        sr_sampling: how each SR stage samples, one entry per stage (or one for all), in the
            same way: its ``noise_level`` is the level its low-res input is noised to.
        batch_size: clips sampled together.
    """

    checkpoint: str | None = None
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
    fps: float | None = None
    sampling: dict[str, Any] | None = None
    batch_size: int = 8
    sr_checkpoints: list[str] | None = None
    sr_sampling: list[dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        for name in ("num_chunks", "batch_size", "num_samples", "num_frames"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.size is not None and (len(self.size) != 2 or min(self.size) < 1):
            raise ValueError(f"size must be two positive sides (H, W), got {self.size}")
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"fps must be a positive finite number, got {self.fps}")
        self._check_stages()
        if self.mode in ("predict", "interpolate", "upscale") and not self.video:
            raise ValueError(f"mode {self.mode!r} needs video")
        if self.mode == "image" and not self.image:
            raise ValueError("mode 'image' needs image")
        if self.mode == "interpolate" and not (self.keyframes or self.keyframe_every):
            raise ValueError("mode 'interpolate' needs keyframes or keyframe_every")

    def _check_stages(self) -> None:
        stages = self.sr_checkpoints or []
        if self.mode == "upscale" and not stages:
            raise ValueError("mode 'upscale' needs sr_checkpoints (--sr SR.ckpt)")
        if self.mode != "upscale" and not self.checkpoint:
            raise ValueError(f"mode {self.mode!r} needs the base checkpoint")
        if self.mode == "upscale" and self.sampling:
            raise ValueError(f"mode 'upscale' runs no base model, so sampling {self.sampling} "
                             "has nothing to apply to (the SR stages take sr_sampling)")
        per_stage = self.sr_sampling
        if per_stage is not None and len(per_stage) not in (1, len(stages)):
            raise ValueError(f"sr_sampling has {len(per_stage)} entries for {len(stages)} SR "
                             "stages: give one for all or one per stage")

    def stage_sampling(self) -> list[dict[str, Any]]:
        """One ``sr_sampling`` entry per SR stage (one given for all is repeated)."""
        n = len(self.sr_checkpoints or [])
        per_stage = self.sr_sampling or [{}]
        return [dict(v) for v in (per_stage * n if len(per_stage) == 1 else per_stage)]

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
