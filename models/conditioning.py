"""``ConditionedBackbone``: the conditioning every backbone of the project shares.

Two things are the same in the windowed DiT and the U-Nets, and are written here once:

- **The conditioning vector** ``(B, D)``: timestep embedding + class embedding (learned null row)
  + masked-mean pooled text (learned null text) + scalar conditions (fps, an SR noise level),
  which scale-shifts every block; the text tokens ``(B, L, D)`` feed cross-attention.
- **The input channels**: the noisy latents concatenated with the self-conditioning estimate
  (``c``), the frame condition ``concat(m * z, m)`` (``c + 1``) and, in a super-resolution stage,
  the low-resolution latent upsampled 2x (``c_lr``, ``models.lowres``); missing ones are zeros.

A subclass calls ``__init__`` with its declaration (``models.backbone.Backbone``), builds the
embedders at its conditioning width with ``_build_embedders`` (the state-dict keys are
``t_embed``, ``class_embed``, ``text_cond``, ``extra_embed`` at the top of the backbone), and
calls ``_conditioning`` and ``_input_channels`` in its ``forward``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.embeddings import (
    ClassEmbedder,
    ScalarConditionEmbedder,
    TextConditioner,
    TimestepEmbedder,
)
from models.lowres import LowresUpsample, LowresUpsampler


class ConditionedBackbone(nn.Module):
    """Base of the project's backbones: the declaration, the embedders, the input channels.

    Args:
        in_channels: latent channels ``c`` of ``x``.
        out_channels: predicted channels (``None`` = ``in_channels``).
        num_classes: real classes (0 = none); index ``num_classes`` is the learned null label.
        text_dim: width ``E`` of text embeddings (0 = no text).
        text_pool_to_adaln: add the pooled text to the conditioning vector.
        num_extra_cond: scalar conditions per sample in ``extra_cond`` (0 = none).
        use_self_cond: accept a self-conditioning estimate (``c`` extra input channels).
        use_frame_cond: accept a frame condition ``concat(m * z, m)`` (``c + 1`` channels).
        lowres_channels: channels of a super-resolution stage's low-res latent (0 = not SR).
        lowres_upsample: how that latent is upsampled 2x (``models.lowres.LowresUpsampler``).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int | None,
        num_classes: int,
        text_dim: int,
        text_pool_to_adaln: bool,
        num_extra_cond: int,
        use_self_cond: bool,
        use_frame_cond: bool,
        lowres_channels: int = 0,
        lowres_upsample: LowresUpsample = "learned",
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels or in_channels
        self.num_classes = num_classes
        self.text_dim = text_dim
        self.text_pool_to_adaln = text_pool_to_adaln
        self.num_extra_cond = num_extra_cond
        self.use_self_cond = use_self_cond
        self.use_frame_cond = use_frame_cond
        self.lowres_channels = lowres_channels
        self.lowres_upsampler = (
            LowresUpsampler(channels=lowres_channels, mode=lowres_upsample)
            if lowres_channels > 0
            else None
        )

    @property
    def input_width(self) -> int:
        """Channels after ``_input_channels``: ``c`` (+ ``c``) (+ ``c + 1``) (+ ``c_lr``)."""
        c = self.in_channels
        return c * (2 if self.use_self_cond else 1) + (c + 1) * self.use_frame_cond + (
            self.lowres_channels
        )

    def _build_embedders(self, width: int) -> None:
        """The timestep, class, text and scalar embedders, at the conditioning width."""
        self.t_embed = TimestepEmbedder(hidden_size=width)
        self.class_embed = (
            ClassEmbedder(num_classes=self.num_classes, hidden_size=width)
            if self.num_classes > 0
            else None
        )
        self.text_cond = (
            TextConditioner(text_dim=self.text_dim, hidden_size=width) if self.text_dim > 0 else None
        )
        self.extra_embed = (
            ScalarConditionEmbedder(num_conds=self.num_extra_cond, hidden_size=width)
            if self.num_extra_cond > 0
            else None
        )

    # ----------------------------------------------------------------------------------- checks
    def _check_x(self, x: Tensor, timesteps: Tensor) -> None:
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must be (B, {self.in_channels}, t, h, w), got {tuple(x.shape)}")
        if timesteps.shape != (x.shape[0],):
            raise ValueError(f"timesteps must be ({x.shape[0]},), got {tuple(timesteps.shape)}")

    @staticmethod
    def _check_cond(
        name: str, cond: Tensor | None, x: Tensor, channels: int, enabled: bool
    ) -> Tensor | None:
        if cond is None:
            return None
        if not enabled:
            raise ValueError(f"{name} given but the model was built with use_{name}=False")
        expected = (x.shape[0], channels, *x.shape[2:])
        if tuple(cond.shape) != expected:
            raise ValueError(f"{name} must have shape {expected}, got {tuple(cond.shape)}")
        return cond

    # ----------------------------------------------------------------------------------- inputs
    def _input_channels(
        self,
        x: Tensor,
        self_cond: Tensor | None,
        frame_cond: Tensor | None,
        lowres: Tensor | None = None,
    ) -> Tensor:
        """``x`` with the self-conditioning, frame-condition and low-res channels:
        ``(B, input_width, t, h, w)``."""
        b, c, t, h, w = x.shape
        sc = self._check_cond("self_cond", self_cond, x, c, self.use_self_cond)
        fc = self._check_cond("frame_cond", frame_cond, x, c + 1, self.use_frame_cond)
        parts = [x]
        if self.use_self_cond:
            parts.append(torch.zeros_like(x) if sc is None else sc.to(x.dtype))
        if self.use_frame_cond:
            parts.append(x.new_zeros((b, c + 1, t, h, w)) if fc is None else fc.to(x.dtype))
        parts += self._lowres_part(lowres, x)
        return torch.cat(parts, dim=1)  # (B, c', t, h, w)

    def _lowres_part(self, lowres: Tensor | None, x: Tensor) -> list[Tensor]:
        """The upsampled low-resolution latent ``(B, c_lr, t, h, w)``, as a list to concatenate."""
        if self.lowres_upsampler is None:
            if lowres is not None:
                raise ValueError("lowres given but the model was built with lowres_channels=0")
            return []
        b, _, t, h, w = x.shape
        expected = (b, self.lowres_channels, t, h // 2, w // 2)
        if lowres is None or tuple(lowres.shape) != expected or h % 2 or w % 2:
            got = None if lowres is None else tuple(lowres.shape)
            raise ValueError(f"lowres must have shape {expected} (half the latent h, w), got {got}")
        return [self.lowres_upsampler(lowres.to(x.dtype))]  # (B, c_lr, t, h, w)

    # ----------------------------------------------------------------------------- conditioning
    def _conditioning(
        self,
        timesteps: Tensor,
        batch: int,
        *,
        class_labels: Tensor | None,
        drop_class: Tensor | None,
        text_emb: Tensor | None,
        text_mask: Tensor | None,
        drop_text: Tensor | None,
        extra_cond: Tensor | None,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """The conditioning vector ``(B, D)``, text tokens ``(B, L, D)`` and their mask."""
        cond = self.t_embed(timesteps)
        if self.class_embed is not None:
            cond = cond + self.class_embed(class_labels, drop_class, batch)
        elif class_labels is not None or drop_class is not None:
            raise ValueError("class_labels/drop_class given but the model has num_classes=0")
        text = mask = None
        if self.text_cond is not None:
            text, mask, pooled = self.text_cond(text_emb, text_mask, drop_text, batch)
            if self.text_pool_to_adaln:
                cond = cond + pooled
        elif text_emb is not None or drop_text is not None:
            raise ValueError("text_emb/drop_text given but the model has text_dim=0")
        if self.extra_embed is not None:
            if extra_cond is None or tuple(extra_cond.shape) != (batch, self.num_extra_cond):
                got = None if extra_cond is None else tuple(extra_cond.shape)
                raise ValueError(f"extra_cond must be ({batch}, {self.num_extra_cond}), got {got}")
            cond = cond + self.extra_embed(extra_cond)
        elif extra_cond is not None:
            raise ValueError("extra_cond given but the model has num_extra_cond=0")
        return cond, text, mask
