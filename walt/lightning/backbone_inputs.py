"""Assembling the backbone's inputs from a data stream, with W.A.L.T's training tricks.

- Condition dropout for classifier-free guidance: labels and text are replaced by their learned
  nulls with probability ``p_drop_class`` / ``p_drop_text``.
- Frame prediction (W.A.L.T sec. 4): with probability ``p_frame_cond`` a video is conditioned on its
  first 1 latent frame (image to video) or first 2 (video prediction) through
  ``c_fp = concat(m * z, m)``. The loss then covers only the frames to be generated, so the model
  is never rewarded for copying the frames it was given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from walt.diffusion.frame_masks import frame_condition, generation_mask, sample_frame_mask


@dataclass
class ConditionConfig:
    """Probabilities and switches of the conditioning tricks.

    Args:
        p_self_cond: probability of the self-conditioning pass (W.A.L.T default 0.9).
        p_frame_cond: probability that a video is frame-conditioned (0 disables it).
        frame_cond_choices: numbers of leading latent frames to condition on, picked uniformly.
        p_drop_class: probability of replacing a label by the learned null label.
        p_drop_text: probability of replacing a caption embedding by the learned null text.
        use_fps: feed the clip's frame rate as an extra scalar condition (Make-A-Video style).
    """

    p_self_cond: float = 0.9
    p_frame_cond: float = 0.0
    frame_cond_choices: list[int] = field(default_factory=lambda: [1, 2])
    p_drop_class: float = 0.1
    p_drop_text: float = 0.1
    use_fps: bool = False


@dataclass(frozen=True)
class BackboneInputs:
    """Which conditioning inputs the backbone takes (read off the network once)."""

    labels: bool = False
    text: bool = False
    frames: bool = False
    extra: int = 0

    @classmethod
    def of(cls, net) -> BackboneInputs:
        return cls(
            labels=getattr(net, "num_classes", 0) > 0,
            text=getattr(net, "text_dim", 0) > 0,
            frames=bool(getattr(net, "use_frame_cond", False)),
            extra=int(getattr(net, "num_extra_cond", 0)),
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
    loss_mask: Tensor | None = None  # (B, 1, t, 1, 1): 1 on frames the loss covers

    def model_kwargs(self, *, uncond: bool = False) -> dict[str, Tensor | None]:
        """Keyword arguments for the backbone; ``uncond`` drops every guided condition."""
        kw: dict[str, Tensor | None] = {}
        if self.class_labels is not None:
            kw["class_labels"] = self.class_labels
            kw["drop_class"] = _all_true(self.class_labels) if uncond else self.drop_class
        if self.text_emb is not None:
            kw["text_emb"], kw["text_mask"] = self.text_emb, self.text_mask
            kw["drop_text"] = _all_true(self.text_emb[:, 0, 0]) if uncond else self.drop_text
        if self.frame_cond is not None and not uncond:
            kw["frame_cond"] = self.frame_cond
        if self.extra_cond is not None:
            kw["extra_cond"] = self.extra_cond
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
) -> Conditions:
    """Conditions for one stream batch; dropout and frame masks are drawn only when training.

    ``inputs`` says which conditions the backbone takes (others in the stream are ignored);
    ``generator`` (a CPU generator) draws every random choice, for reproducible resumes.
    """
    b, device = z0.shape[0], z0.device
    out = Conditions()
    if inputs.labels and stream.get("label") is not None:
        labels = stream["label"].to(device).long()
        drop = labels < 0  # unlabelled samples always see the null label
        if training and cfg.p_drop_class > 0:
            drop = drop | (torch.rand(b, generator=generator).to(device) < cfg.p_drop_class)
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
    if cfg.use_fps:
        if inputs.extra != 1:
            raise ValueError(f"use_fps needs a backbone with num_extra_cond=1, not {inputs.extra}")
        out.extra_cond = stream["fps"].to(device=device, dtype=z0.dtype).reshape(b, 1)
    if inputs.frames:
        mask = sample_frame_mask(
            z0.shape,
            p_frame_cond=cfg.p_frame_cond if training else 0.0,
            frame_cond_choices=cfg.frame_cond_choices,
            generator=generator,
        ).to(device)  # (B, 1, t, 1, 1)
        out.frame_cond = frame_condition(z0, mask)
        out.loss_mask = generation_mask(mask)
    return out
