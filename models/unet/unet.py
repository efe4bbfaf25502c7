"""``FactorizedUnet``: the space-time U-Net skeleton shared by ``SpaceTimeUnet`` (Make-A-Video)
and ``Unet3D`` (Video Diffusion Models).

Levels of residual blocks (``ResBlock``) with optional factorized attention
(``SpatioTemporalAttention``), a middle block, and a mirrored upward path with one skip per level.
It implements the backbone interface (``models.backbone.Backbone``) with the windowed DiT's
inputs and their meaning (``WindowedDiT.forward``), built by the same code
(``models.conditioning.ConditionedBackbone``): the noisy latents (or pixels) concatenated on
channels with the self-conditioning estimate and the frame condition ``concat(m * z, m)``, and
one conditioning vector = timestep + class (learned null row) + pooled text (learned null text)
+ scalar conditions such as fps, which scale-shifts every residual block. Text tokens also feed
a cross-attention in every attention block.

``enable_time=False`` builds the 2D image model: the same module tree without a single temporal
parameter, which ``models.unet.inflation.inflate_from_2d`` loads into the video model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from models.attention import AttnBackend
from models.conditioning import ConditionedBackbone
from models.unet.pseudo_conv import PseudoConv3d, check_image_frames
from models.unet.resample import Downsample, Upsample
from models.unet.resblock import ResBlock, group_norm, per_frame
from models.unet.st_attention import SpatioTemporalAttention


def per_level(name: str, value: int | bool | Sequence, levels: int) -> list:
    """A scalar repeated per level, or a sequence checked to have one entry per level."""
    if isinstance(value, (int, bool)):
        return [value] * levels
    value = list(value)
    if len(value) != levels:
        raise ValueError(f"{name} needs one entry per level ({levels}), got {value}")
    return value


@dataclass(frozen=True)
class LevelPlan:
    """Per level: width, residual blocks, spatial and temporal attention; per downsample:
    whether it halves time."""

    dims: list[int]
    blocks: list[int]
    spatial: list[bool]
    temporal: list[bool]  # already off where enable_time is False
    compress: list[bool]  # one per downsample (levels - 1), already off without time

    @classmethod
    def of(
        cls,
        *,
        dim: int,
        dim_mult: Sequence[int],
        num_res_blocks: int | Sequence[int],
        attn_levels: bool | Sequence[bool],
        temporal_attn_levels: bool | Sequence[bool] | None,
        temporal_compression: bool | Sequence[bool],
        enable_time: bool,
        attn_head_dim: int,
        prob_focus_present: float,
    ) -> LevelPlan:
        """Check the ``FactorizedUnet`` level options and expand them to one entry per level."""
        levels = len(dim_mult)
        if levels < 1 or dim < 1:
            raise ValueError(f"dim_mult must be non-empty and dim positive, got {dim_mult}, {dim}")
        if not 0.0 <= prob_focus_present <= 1.0:
            raise ValueError(f"prob_focus_present must be in [0, 1], got {prob_focus_present}")
        dims = [dim * m for m in dim_mult]
        bad = [d for d in dims if d % attn_head_dim]
        if bad:
            raise ValueError(f"level widths {bad} do not divide by attn_head_dim={attn_head_dim}")
        spatial = per_level("attn_levels", attn_levels, levels)
        temporal = per_level(
            "temporal_attn_levels", spatial if temporal_attn_levels is None else temporal_attn_levels,
            levels,
        )
        compress = per_level("temporal_compression", temporal_compression, levels)
        if levels > 1 and compress[-1] and not isinstance(temporal_compression, bool):
            raise ValueError("temporal_compression: the last level has no downsample to compress")
        return cls(
            dims=dims,
            blocks=per_level("num_res_blocks", num_res_blocks, levels),
            spatial=spatial,
            temporal=[bool(on) and enable_time for on in temporal],
            compress=[bool(c) and enable_time for c in compress[:-1]],
        )

    def attn(self, i: int, attn: dict) -> dict:
        """The attention options of level ``i``."""
        return dict(spatial=self.spatial[i], temporal=self.temporal[i], **attn)


class FactorizedUnet(ConditionedBackbone):
    """Space-time U-Net; see the module docstring. Use ``SpaceTimeUnet`` or ``Unet3D``.

    Args:
        in_channels: channels ``c`` of ``x`` (latent channels, or 3 in pixel space).
        out_channels: predicted channels (``None`` = ``in_channels``).
        dim: channels of the first level.
        dim_mult: channel multiplier per level (``len`` = number of levels).
        num_res_blocks: residual blocks per level (an int or one per level).
        attn_levels: spatial + temporal attention after each block of these levels.
        temporal_attn_levels: temporal attention on these levels (``None`` = ``attn_levels``);
            a level with temporal but no spatial attention gets a temporal-only block.
        temporal_compression: halve time after these levels (not after the last one).
        temporal_conv: factorized ``3x3 + 3`` convs (``False``: ``1 x 3 x 3`` convs, VDM).
        enable_time: build the temporal layers (``False`` = the 2D image model).
        causal_time: temporal convs and attention see only the past.
        max_frames: frames the temporal position tables cover (more interpolate).
        attn_head_dim: channels per attention head.
        prob_focus_present: in training, the fraction of videos whose temporal attention is
            masked to the identity (VDM's joint image-video training, Ho et al. 2022, Sec. 3).
        num_classes: real classes (0 = none); index ``num_classes`` is the learned null label.
        text_dim: width ``E`` of text embeddings (0 = no text).
        text_pool_to_adaln: add the pooled text to the conditioning vector.
        num_extra_cond: scalar conditions per sample in ``extra_cond`` (e.g. fps).
        use_self_cond: accept a self-conditioning estimate (``c`` extra input channels).
        use_frame_cond: accept a frame condition ``concat(m * z, m)`` (``c + 1`` channels).
        groups: GroupNorm groups.
        dropout: residual-block dropout.
        qk_norm: LayerNorm queries and keys per head.
        grad_checkpointing: recompute block activations in the backward pass (training only).
        attn_backend: ``"sdpa" | "xformers" | "reference"``; ``None`` = module default.
    """

    def __init__(
        self,
        *,
        in_channels: int = 8,
        out_channels: int | None = None,
        dim: int = 64,
        dim_mult: Sequence[int] = (1, 2, 4, 4),
        num_res_blocks: int | Sequence[int] = 2,
        attn_levels: bool | Sequence[bool] = (False, False, True, True),
        temporal_attn_levels: bool | Sequence[bool] | None = None,
        temporal_compression: bool | Sequence[bool] = False,
        temporal_conv: bool = True,
        enable_time: bool = True,
        causal_time: bool = False,
        max_frames: int = 17,
        attn_head_dim: int = 32,
        prob_focus_present: float = 0.0,
        num_classes: int = 0,
        text_dim: int = 0,
        text_pool_to_adaln: bool = True,
        num_extra_cond: int = 0,
        use_self_cond: bool = True,
        use_frame_cond: bool = True,
        groups: int = 32,
        dropout: float = 0.0,
        qk_norm: bool = True,
        grad_checkpointing: bool = False,
        attn_backend: AttnBackend | None = None,
    ) -> None:
        plan = LevelPlan.of(
            dim=dim, dim_mult=dim_mult, num_res_blocks=num_res_blocks, attn_levels=attn_levels,
            temporal_attn_levels=temporal_attn_levels, temporal_compression=temporal_compression,
            enable_time=enable_time, attn_head_dim=attn_head_dim,
            prob_focus_present=prob_focus_present,
        )
        super().__init__(
            in_channels=in_channels, out_channels=out_channels, num_classes=num_classes,
            text_dim=text_dim, text_pool_to_adaln=text_pool_to_adaln,
            num_extra_cond=num_extra_cond, use_self_cond=use_self_cond,
            use_frame_cond=use_frame_cond,
        )
        self.enable_time, self.levels = enable_time, len(plan.dims)
        self.prob_focus_present, self.grad_checkpointing = prob_focus_present, grad_checkpointing
        self.temporal_compression = plan.compress
        self._build_embedders(cond_dim := 4 * dim)
        res = dict(cond_dim=cond_dim, temporal_conv=temporal_conv and enable_time,
                   causal_time=causal_time, groups=groups, dropout=dropout)
        attn = dict(head_dim=attn_head_dim, text_dim=cond_dim if text_dim > 0 else 0,
                    max_frames=max_frames, causal_time=causal_time, qk_norm=qk_norm,
                    attn_backend=attn_backend)
        self.init_conv = PseudoConv3d(dim_in=self.input_width, dim_out=dim, **_conv(res))
        self._build_levels(plan, dim, res, attn)
        self.out_norm = group_norm(dim, groups)
        self.out_conv = PseudoConv3d(dim_in=dim, dim_out=self.out_channels, **_conv(res))

    def _build_levels(self, plan: LevelPlan, dim: int, res: dict, attn: dict) -> None:
        """The downward levels, the middle block and the upward levels (one skip per level)."""
        dims, last = plan.dims, len(plan.dims) - 1
        self.downs, self.ups = nn.ModuleList(), nn.ModuleList()
        for i, d in enumerate(dims):
            level = _level(dims[i - 1] if i else dim, d, plan.blocks[i], res, plan.attn(i, attn))
            level.resample = Downsample(dim=d, temporal=plan.compress[i]) if i < last else None
            self.downs.append(level)
        # The middle block attends over space and time at the coarsest level (both papers).
        self.mid = nn.ModuleList([
            ResBlock(dim_in=dims[-1], dim_out=dims[-1], **res),
            _attention(dims[-1], spatial=True, temporal=self.enable_time, **attn),
            ResBlock(dim_in=dims[-1], dim_out=dims[-1], **res),
        ])
        for i in reversed(range(len(dims))):
            level = _level(2 * dims[i], dims[i], plan.blocks[i], res, plan.attn(i, attn))
            level.resample = (
                Upsample(dim_in=dims[i + 1], dim_out=dims[i], temporal=plan.compress[i])
                if i < last
                else None
            )
            self.ups.append(level)

    # ----------------------------------------------------------------------------------- inputs
    def check_size(self, t: int, h: int, w: int) -> None:
        """Raise a clear error unless a ``(t, h, w)`` grid passes through every level."""
        s = 2 ** (self.levels - 1)
        if h % s or w % s:
            raise ValueError(
                f"height and width ({h}, {w}) must divide by {s} (2 ** (levels - 1) for "
                f"{self.levels} levels)"
            )
        k = 2 ** sum(self.temporal_compression)
        if t > 1 and (t - 1) % k:
            raise ValueError(
                f"frame count t={t} must be 1 + {k}m: {sum(self.temporal_compression)} levels "
                "compress time (T -> 1 + (T - 1) / 2 each)"
            )

    def _focus_present(self, b: int, device: torch.device) -> Tensor | None:
        """``(B,)`` bool: videos whose temporal attention is the identity this step (VDM)."""
        if not self.training or self.prob_focus_present == 0.0:
            return None
        return torch.rand(b, device=device) < self.prob_focus_present

    # ---------------------------------------------------------------------------------- forward
    def forward(
        self,
        x: Tensor,
        timesteps: Tensor,
        *,
        class_labels: Tensor | None = None,
        text_emb: Tensor | None = None,
        text_mask: Tensor | None = None,
        self_cond: Tensor | None = None,
        frame_cond: Tensor | None = None,
        extra_cond: Tensor | None = None,
        drop_class: Tensor | None = None,
        drop_text: Tensor | None = None,
        image_frames: Tensor | None = None,
    ) -> Tensor:
        """Predict (v by default) for noisy inputs; the arguments mean what they mean for
        ``WindowedDiT.forward``.

        Args:
            x: ``(B, c, t, h, w)``; ``t = 1`` is an image and skips every temporal layer.
            timesteps: ``(B,)`` step index ``0..999``.
            class_labels, drop_class: ``(B,)`` labels (``-1``/``None`` = null) and drop flags.
            text_emb, text_mask, drop_text: ``(B, L, E)``, ``(B, L)``, ``(B,)``.
            self_cond: ``(B, c, t, h, w)`` x0 estimate; ``None`` -> zeros.
            frame_cond: ``(B, c + 1, t, h, w)`` = ``concat(m * z, m)``; ``None`` -> zeros.
            extra_cond: ``(B, num_extra_cond)`` scalars (e.g. fps).
            image_frames: ``(B, t)`` bool, ``True`` marks independent images packed next to
                video frames: no temporal layer mixes them with other frames.

        Returns:
            ``(B, c_out, t, h, w)``.
        """
        self._check_x(x, timesteps)
        b, _, t, h, w = x.shape
        self.check_size(t, h, w)
        frames = check_image_frames(image_frames, b, t)
        if frames is not None and any(self.temporal_compression):
            raise ValueError("image_frames cannot be packed into a U-Net that compresses time")
        cond, text, mask = self._conditioning(
            timesteps, b, class_labels=class_labels, drop_class=drop_class, text_emb=text_emb,
            text_mask=text_mask, drop_text=drop_text, extra_cond=extra_cond,
        )
        ctx = dict(c_act=F.silu(cond), text=text, text_mask=mask,
                   focus_present=self._focus_present(b, x.device), image_frames=frames)
        hid = self.init_conv(self._input_channels(x, self_cond, frame_cond), image_frames=frames)
        skips = []
        for level in self.downs:  # (B, d_i, t_i, h / 2^i, w / 2^i)
            hid = self._level(level, hid, ctx)
            skips.append(hid)
            if level.resample is not None:
                hid = level.resample(hid)
        first, attn, second = self.mid
        hid = self._block(first, attn, hid, ctx)
        hid = self._run(second, hid, ctx["c_act"], image_frames=ctx["image_frames"])
        for level, skip in zip(self.ups, reversed(skips)):
            if level.resample is not None:
                hid = level.resample(hid)
            hid = self._level(level, torch.cat([hid, skip], dim=1), ctx)
        out = F.silu(per_frame(self.out_norm, hid))
        return self.out_conv(out, image_frames=frames)  # (B, c_out, t, h, w)

    def _level(self, level: nn.Module, hid: Tensor, ctx: dict) -> Tensor:
        for block, attn in zip(level.blocks, level.attns):
            hid = self._block(block, attn, hid, ctx)
        return hid

    def _block(self, block: ResBlock, attn: nn.Module, hid: Tensor, ctx: dict) -> Tensor:
        frames = ctx["image_frames"]
        hid = self._run(block, hid, ctx["c_act"], image_frames=frames)
        if isinstance(attn, SpatioTemporalAttention):
            hid = self._run(
                attn, hid, text=ctx["text"], text_mask=ctx["text_mask"],
                focus_present=ctx["focus_present"], image_frames=frames,
            )
        return hid

    def _run(self, fn: nn.Module, *args, **kwargs) -> Tensor:
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(fn, *args, use_reentrant=False, **kwargs)
        return fn(*args, **kwargs)


def _attention(
    dim: int, *, spatial: bool, temporal: bool, head_dim: int, text_dim: int, **kw
) -> nn.Module:
    """A ``SpatioTemporalAttention`` (``nn.Identity`` where a level attends to nothing).

    Text is read where the frame is attended spatially, so the 2D model has the same layers."""
    if not (spatial or temporal):
        return nn.Identity()
    return SpatioTemporalAttention(
        dim=dim, num_heads=dim // head_dim, spatial=spatial, enable_time=temporal,
        text_dim=text_dim if spatial else 0, **kw,
    )


def _level(dim_in: int, dim: int, num_blocks: int, res: dict, attn: dict) -> nn.Module:
    """One level: ``num_blocks`` residual blocks, each followed by its attention (or identity)."""
    level = nn.Module()
    level.blocks = nn.ModuleList(
        ResBlock(dim_in=dim_in if j == 0 else dim, dim_out=dim, **res) for j in range(num_blocks)
    )
    level.attns = nn.ModuleList(_attention(dim, **attn) for _ in range(num_blocks))
    return level


def _conv(res: dict) -> dict:
    """``PseudoConv3d`` options matching the residual blocks' (temporal conv, causality)."""
    return dict(enable_time=res["temporal_conv"], causal_time=res["causal_time"])
