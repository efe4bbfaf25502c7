"""``Backbone``: what every denoiser declares about the inputs it takes.

A backbone maps noisy latents ``x`` ``(B, c, t, h, w)`` and diffusion ``timesteps`` ``(B,)`` to a
prediction ``(B, c_out, t, h, w)``. Every other input is optional and declared by an attribute,
set when the backbone is built, so that the training module builds only the conditions the
backbone takes (``walt.core.backbone_inputs.BackboneInputs.of`` reads them):

| attribute | keyword inputs of ``forward`` | 0 / ``False`` means |
| --- | --- | --- |
| ``num_classes`` | ``class_labels``, ``drop_class`` | no class conditioning |
| ``text_dim`` | ``text_emb``, ``text_mask``, ``drop_text`` | no text |
| ``num_extra_cond`` | ``extra_cond`` ``(B, n)``: scalars such as fps, an SR noise level | none |
| ``use_self_cond`` | ``self_cond`` ``(B, c, t, h, w)`` | no self-conditioning |
| ``use_frame_cond`` | ``frame_cond`` ``(B, c + 1, t, h, w)`` = ``concat(m * z, m)`` | no frame condition |
| ``lowres_channels`` | ``lowres`` ``(B, c_lr, t, h/2, w/2)`` | not a super-resolution stage |

``image_frames`` ``(B, t)`` (independent images packed next to video frames) is taken by every
backbone. The project's backbones (``models.WindowedDiT``, ``models.SpaceTimeUnet``,
``models.Unet3D``) implement this by subclassing ``models.conditioning.ConditionedBackbone``; a
user's backbone only needs the attributes and the ``forward``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class Backbone(Protocol):
    """The interface of a denoiser; see the module docstring for what each attribute means."""

    in_channels: int
    out_channels: int
    num_classes: int
    text_dim: int
    num_extra_cond: int
    use_self_cond: bool
    use_frame_cond: bool
    lowres_channels: int

    def __call__(self, x: Tensor, timesteps: Tensor, **inputs: Tensor | None) -> Tensor: ...


# Every attribute a backbone declares, in the order above.
DECLARATION: tuple[str, ...] = tuple(Backbone.__annotations__)


def missing_declaration(net: object) -> list[str]:
    """The attributes of :class:`Backbone` that ``net`` does not declare (empty: it does)."""
    return [name for name in DECLARATION if not hasattr(net, name)]
