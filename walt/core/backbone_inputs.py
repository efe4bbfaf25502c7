"""Assembling the backbone's inputs from a data stream, with W.A.L.T's training tricks.

- Condition dropout for classifier-free guidance: labels and text are replaced by their learned
  nulls with probability ``p_drop_class`` / ``p_drop_text``.
- Frame prediction (W.A.L.T sec. 4): with probability ``p_frame_cond`` a video is conditioned on its
  first 1 latent frame (image to video) or first 2 (video prediction) through
  ``c_fp = concat(m * z, m)``. The loss then covers only the frames to be generated, so the model
  is never rewarded for copying the frames it was given.
- Keyframe interpolation (Make-A-Video's masked frame interpolation, in latent space): with
  probability ``p_interpolate`` the mask keeps every k-th latent frame and the last one instead.
- Scalar conditions (``extra_cond``, AdaLN): the clip's frame rate (Make-A-Video's fps
  conditioning), then a super-resolution stage's ``noise_level`` (noise-conditioning
  augmentation, ``walt.core.super_resolution``).
- Super-resolution: the stream's ``lowres`` latent ``(B, c, t, h/2, w/2)`` (already noised to its
  ``noise_level``) is one more backbone input, passed as it is (guidance keeps it).

Training, validation, sampling, the sample logger and ``predict`` all build the backbone's inputs
here: :func:`build_conditions` from a stream (a batch, or the stream ``sampling_stream`` makes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from models.backbone import Backbone, missing_declaration
from walt.diffusion.frame_masks import (
    frame_condition,
    generation_mask,
    per_frame,
    sample_frame_mask,
    sample_interpolation_mask,
)

# ScalarConditionEmbedder's sinusoidal features want a 0..1000 scale, like the timesteps
# (models/embeddings.py): a noise level, a fraction of num_train_timesteps, goes in x1000.
SCALAR_SCALES: dict[str, float] = {"noise_level": 1000.0}


@dataclass
class ConditionConfig:
    """Probabilities and switches of the conditioning tricks.

    Args:
        p_self_cond: probability of the self-conditioning pass (W.A.L.T default 0.9).
        p_frame_cond: probability that a video is frame-conditioned (0 disables it).
        frame_cond_choices: numbers of leading latent frames to condition on, picked uniformly.
        p_drop_class: probability of replacing a label by the learned null label.
        p_drop_text: probability of replacing a caption embedding by the learned null text.
        use_fps: feed the clip's frame rate (the stream's ``fps``: source fps / stride) as an
            AdaLN scalar condition (Make-A-Video); the backbone needs ``num_extra_cond=1``.
        p_interpolate: probability that a video is keyframe-conditioned for interpolation
            (every k-th latent frame and the last one known), drawn among the videos that are
            not prefix-conditioned; 0 disables it.
        interpolate_every: the keyframe spacings k, picked uniformly.
    """

    p_self_cond: float = 0.9
    p_frame_cond: float = 0.0
    frame_cond_choices: list[int] = field(default_factory=lambda: [1, 2])
    p_drop_class: float = 0.1
    p_drop_text: float = 0.1
    use_fps: bool = False
    p_interpolate: float = 0.0
    interpolate_every: list[int] = field(default_factory=lambda: [2, 3])

    def scalar_names(self, inputs: BackboneInputs | None = None) -> tuple[str, ...]:
        """Names of the stream's scalar conditions, in ``extra_cond``'s column order: ``fps``
        when ``use_fps``, then ``noise_level`` when the backbone is a super-resolution stage
        (``inputs.lowres``)."""
        sr = inputs is not None and inputs.lowres > 0
        return tuple(name for name, on in (("fps", self.use_fps), ("noise_level", sr)) if on)


@dataclass(frozen=True)
class BackboneInputs:
    """Which conditioning inputs the backbone takes; read off the network once, when the module
    is built, from its declaration (``models.backbone.Backbone``: ``num_classes``, ``text_dim``,
    ``num_extra_cond``, ``use_self_cond``, ``use_frame_cond``, ``lowres_channels``)."""

    labels: bool = False
    text: bool = False
    frames: bool = False
    self_cond: bool = False
    extra: int = 0
    num_classes: int = 0
    lowres: int = 0  # channels of a super-resolution stage's low-res latent (0: not SR)

    @classmethod
    def of(cls, net: Backbone) -> BackboneInputs:
        """The inputs ``net`` declares; a clear error if it does not implement ``Backbone``."""
        if not isinstance(net, Backbone):
            raise TypeError(
                f"{type(net).__name__} does not implement the backbone interface "
                f"(models.backbone.Backbone): it does not declare {missing_declaration(net)}"
            )
        return cls(
            labels=net.num_classes > 0,
            text=net.text_dim > 0,
            frames=bool(net.use_frame_cond),
            self_cond=bool(net.use_self_cond),
            extra=int(net.num_extra_cond),
            num_classes=int(net.num_classes),
            lowres=int(net.lowres_channels),
        )


@dataclass
class Conditions:
    """The backbone's keyword inputs for one stream, plus the loss mask over latent frames."""

    class_labels: Tensor | None = None
    drop_class: Tensor | None = None
    text_emb: Tensor | None = None
    text_mask: Tensor | None = None
    drop_text: Tensor | None = None
    frame_cond: Tensor | None = None
    extra_cond: Tensor | None = None
    lowres: Tensor | None = None  # (B, c, t, h/2, w/2): an SR stage's noised low-res latent
    loss_mask: Tensor | None = None  # (B, 1, t, 1, 1): 1 on frames the loss covers

    def model_kwargs(
        self, *, uncond: bool = False, drop_frames: bool = False
    ) -> dict[str, Tensor | None]:
        """Keyword arguments for the backbone.

        ``uncond`` replaces the label and text by their nulls (classifier-free guidance);
        ``drop_frames`` leaves out the frame condition, i.e. the all-zero mask (the separate
        guidance over ``c_fp`` of W.A.L.T's autoregressive generation).
        """
        kw: dict[str, Tensor | None] = {}
        if self.class_labels is not None:
            kw["class_labels"] = self.class_labels
            kw["drop_class"] = _all_true(self.class_labels) if uncond else self.drop_class
        if self.text_emb is not None:
            kw["text_emb"], kw["text_mask"] = self.text_emb, self.text_mask
            kw["drop_text"] = _all_true(self.text_emb[:, 0, 0]) if uncond else self.drop_text
        if self.frame_cond is not None and not drop_frames:
            kw["frame_cond"] = self.frame_cond
        if self.extra_cond is not None:
            kw["extra_cond"] = self.extra_cond
        if self.lowres is not None:
            kw["lowres"] = self.lowres
        return kw


def _all_true(like: Tensor) -> Tensor:
    return torch.ones(like.shape[0], dtype=torch.bool, device=like.device)


def build_conditions(
    stream: Mapping[str, Any],
    cfg: ConditionConfig,
    *,
    z0: Tensor,
    training: bool,
    inputs: BackboneInputs,
    generator: torch.Generator | None = None,
    frame_mask: Tensor | None = None,
) -> Conditions:
    """Conditions for one stream batch; dropout and frame masks are drawn only when training.

    Args:
        stream: the batch stream (``label``, ``text_emb``/``text_mask``, ``fps``, an SR
            stage's ``lowres`` and ``noise_level``, ...).
        z0: ``(B, c, t, h, w)`` clean latents; their known frames feed ``c_fp``.
        training: draw condition dropout and frame masks.
        inputs: which conditions the backbone takes (others in the stream are ignored).
        generator: a CPU generator drawing every random choice, for reproducible resumes.
        frame_mask: ``(B, t)`` known latent frames, given at sampling; ``None`` draws one when
            training and conditions on no frame otherwise.
    """
    b, device = z0.shape[0], z0.device
    out = Conditions()
    if inputs.labels and stream.get("label") is not None:
        labels = stream["label"].to(device).long()
        drop = labels < 0  # unlabelled samples always see the null label
        if training and cfg.p_drop_class > 0:
            drop = drop | (torch.rand(b, generator=generator).to(device) < cfg.p_drop_class)
        # -1 is only an index for the null row's flag; the label itself is never read then.
        out.class_labels, out.drop_class = labels.clamp_min(0), drop
    if inputs.text:
        if stream.get("text_emb") is None:
            raise KeyError("the backbone takes text but the batch has no text_emb (precompute "
                           "it or give the module a text_encoder)")
        out.text_emb = stream["text_emb"].to(device)
        out.text_mask = stream["text_mask"].to(device).bool()
        drop = ~out.text_mask.any(dim=1)  # an empty caption is the null text
        if training and cfg.p_drop_text > 0:
            drop = drop | (torch.rand(b, generator=generator).to(device) < cfg.p_drop_text)
        out.drop_text = drop
    out.extra_cond = _scalar_conditions(stream, cfg, inputs, b=b, like=z0)
    if inputs.lowres:
        if stream.get("lowres") is None:
            raise KeyError("the backbone is a super-resolution stage but the stream has no "
                           "'lowres' latent (give lowres_latents when sampling)")
        out.lowres = stream["lowres"].to(device=device, dtype=z0.dtype)
    if inputs.frames:
        if frame_mask is not None:
            mask = per_frame(frame_mask.to(device=device, dtype=z0.dtype))  # (B, 1, t, 1, 1)
        else:
            mask = _training_mask(z0.shape, cfg, training=training, generator=generator)
        out.frame_cond = frame_condition(z0, mask.to(device))
        out.loss_mask = generation_mask(mask.to(device))
    elif frame_mask is not None:
        raise ValueError("frame_mask given but the backbone takes no frame condition "
                         "(use_frame_cond=False)")
    return out


def _training_mask(
    shape: torch.Size, cfg: ConditionConfig, *, training: bool, generator: torch.Generator | None
) -> Tensor:
    """Prefix masks with probability ``p_frame_cond``, else interpolation keyframes with
    probability ``p_interpolate``, else none. ``(B, 1, t, 1, 1)``."""
    prefix = sample_frame_mask(
        shape,
        p_frame_cond=cfg.p_frame_cond if training else 0.0,
        frame_cond_choices=cfg.frame_cond_choices,
        generator=generator,
    )
    if not training or cfg.p_interpolate <= 0:
        return prefix
    keys = sample_interpolation_mask(
        shape, p_interpolate=cfg.p_interpolate, interpolate_every=cfg.interpolate_every,
        generator=generator,
    )
    has_prefix = prefix.flatten(1).amax(dim=1).bool()
    return torch.where(has_prefix[:, None, None, None, None], prefix, keys)


def _scalar_conditions(
    stream: Mapping[str, Any], cfg: ConditionConfig, inputs: BackboneInputs, *, b: int, like: Tensor
) -> Tensor | None:
    """``(B, n)`` AdaLN scalar conditions in ``cfg.scalar_names()`` order, or None."""
    names = cfg.scalar_names(inputs)
    if names and len(names) != inputs.extra:
        raise ValueError(
            f"the conditioning config feeds scalar conditions {list(names)} but the backbone "
            f"takes num_extra_cond={inputs.extra}"
        )
    if not names:
        return None
    columns = []
    for name in names:
        if stream.get(name) is None:
            raise KeyError(f"the backbone is conditioned on {name!r} but the batch has none "
                           f"(give {name} when sampling)")
        value = torch.as_tensor(stream[name]).to(device=like.device, dtype=like.dtype)
        value = value * SCALAR_SCALES.get(name, 1.0)
        columns.append(value.reshape(-1).expand(b) if value.numel() == 1 else value.reshape(b))
    return torch.stack(columns, dim=1)  # (B, n)
