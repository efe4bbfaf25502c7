"""``SpatioTemporalAttention``: residual spatial attention, then residual temporal attention
(Make-A-Video, Singer et al. 2022, Sec. 3.2; Video Diffusion Models, Ho et al. 2022, Sec. 3).

Spatial attention runs over the ``H * W`` positions of each frame (optionally followed by a
cross-attention to text); temporal attention runs over the ``T`` frames of each position, with a
learned relative position bias in time (``models.rel_pos`` with a ``(T, 1, 1)`` window). The
temporal output projection starts at zero, so a fresh block is spatial-only and an image model's
weights carry over unchanged. A ``(B, t, t)`` mask restricts temporal attention to the identity
for VDM's "focus on present" samples and for packed image frames, and to the past when causal.
"""

from __future__ import annotations

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from models.attention import AttnBackend, SelfAttention, WindowCrossAttention
from models.rel_pos import RelativePositionBias
from models.unet.pseudo_conv import check_image_frames


def temporal_mask(
    b: int,
    t: int,
    *,
    device: torch.device,
    focus_present: Tensor | None = None,
    image_frames: Tensor | None = None,
    causal: bool = False,
) -> Tensor | None:
    """``(B, t, t)`` bool, ``True`` where query frame ``i`` may attend to key frame ``j``.

    Every frame always sees itself, so no row is fully masked. ``None`` when nothing is masked.
    """
    if focus_present is None and image_frames is None and not causal:
        return None
    eye = torch.eye(t, dtype=torch.bool, device=device)
    allowed = torch.ones(b, t, t, dtype=torch.bool, device=device)
    if focus_present is not None:
        if tuple(focus_present.shape) != (b,):
            raise ValueError(f"focus_present must be ({b},), got {tuple(focus_present.shape)}")
        allowed = allowed & ~focus_present.bool().to(device)[:, None, None]
    if image_frames is not None:
        video = ~image_frames.to(device)  # (B, t)
        allowed = allowed & video[:, :, None] & video[:, None, :]
    if causal:
        allowed = allowed & torch.tril(torch.ones(t, t, dtype=torch.bool, device=device))
    return allowed | eye


class SpatioTemporalAttention(nn.Module):
    """Factorized attention block; see the module docstring."""

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        max_frames: int = 17,
        spatial: bool = True,
        enable_time: bool = True,
        causal_time: bool = False,
        text_dim: int = 0,
        qk_norm: bool = True,
        attn_backend: AttnBackend | None = None,
    ) -> None:
        """Args:
        dim: channels ``C`` of the feature map.
        num_heads: attention heads (``dim`` must divide by it).
        max_frames: frames the temporal relative-position table covers (more interpolate).
        spatial: include the spatial attention (``False``: temporal only).
        enable_time: build the temporal attention (``False`` = a 2D block, no temporal params).
        causal_time: frame ``i`` attends only to frames ``<= i``.
        text_dim: width of the text tokens for a cross-attention after the spatial attention
            (0 = none); the tokens are projected to ``dim`` here.
        qk_norm: LayerNorm queries and keys per head.
        attn_backend: kernel override for ``models.attention`` (``None`` = default switch).
        """
        super().__init__()
        if max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")
        kw = dict(dim=dim, num_heads=num_heads, qk_norm=qk_norm, attn_backend=attn_backend)
        self.causal_time = causal_time
        self.spatial_norm = nn.LayerNorm(dim) if spatial else None
        self.spatial_attn = SelfAttention(**kw) if spatial else None
        self.text_proj = nn.Linear(text_dim, dim) if text_dim > 0 else None
        self.text_norm = nn.LayerNorm(dim) if text_dim > 0 else None
        self.text_attn = WindowCrossAttention(**kw) if text_dim > 0 else None
        self.temporal_norm = self.temporal_attn = self.temporal_rel_pos = None
        if enable_time:
            self.temporal_norm = nn.LayerNorm(dim)
            self.temporal_attn = SelfAttention(**kw)
            # Zero output: the block starts spatial-only (Make-A-Video, Sec. 3.2).
            nn.init.zeros_(self.temporal_attn.proj.weight)
            nn.init.zeros_(self.temporal_attn.proj.bias)
            self.temporal_rel_pos = RelativePositionBias(
                window=(max_frames, 1, 1), num_heads=num_heads
            )

    def forward(
        self,
        x: Tensor,
        *,
        enable_time: bool = True,
        text: Tensor | None = None,
        text_mask: Tensor | None = None,
        focus_present: Tensor | None = None,
        image_frames: Tensor | None = None,
    ) -> Tensor:
        """Args:
        x: ``(B, C, H, W)`` images or ``(B, C, T, H, W)`` videos.
        enable_time: apply the temporal attention (when built and ``T > 1``).
        text: ``(B, L, text_dim)`` tokens (required when built with ``text_dim > 0``).
        text_mask: ``(B, L)`` bool, ``True`` = real token.
        focus_present: ``(B,)`` bool, ``True`` -> that video's frames attend only to themselves.
        image_frames: ``(B, T)`` bool, ``True`` marks packed independent images: they neither
            see nor are seen by other frames and keep their input, like a lone image (``T = 1``).

        Returns:
            the same shape as ``x``.
        """
        if x.ndim == 4:
            return self.forward(x[:, :, None], enable_time=False, text=text, text_mask=text_mask)[
                :, :, 0
            ]
        if x.ndim != 5:
            raise ValueError(f"x must be (B, C, H, W) or (B, C, T, H, W), got {tuple(x.shape)}")
        b, _, t, h, w = x.shape
        tokens = rearrange(x, "b c t h w -> (b t) (h w) c")  # (B*T, H*W, C)
        if self.spatial_attn is not None:
            tokens = tokens + self.spatial_attn(self.spatial_norm(tokens))
        if self.text_attn is not None:
            tokens = tokens + self._text(tokens, text, text_mask, b, t)
        if self.temporal_attn is not None and enable_time and t > 1:
            seq = rearrange(tokens, "(b t) n c -> b n t c", b=b)  # (B, H*W, T, C)
            frames = check_image_frames(image_frames, b, t)
            mask = temporal_mask(
                b, t, device=x.device, focus_present=focus_present, image_frames=frames,
                causal=self.causal_time,
            )
            bias = self.temporal_rel_pos((t, 1, 1)).to(x.dtype)  # (heads, T, T)
            if mask is not None:
                neg = torch.zeros(mask.shape, dtype=x.dtype, device=x.device)
                neg = neg.masked_fill(~mask, float("-inf"))
                bias = bias + neg[:, None, None]  # (B, 1, heads, T, T)
            out = seq + self.temporal_attn(self.temporal_norm(seq), bias)
            if frames is not None:  # packed images skip the temporal layer, as a lone image does
                out = torch.where(frames[:, None, :, None], seq, out)
            tokens = rearrange(out, "b n t c -> (b t) n c")
        return rearrange(tokens, "(b t) (h w) c -> b c t h w", b=b, h=h)

    def _text(
        self, tokens: Tensor, text: Tensor | None, text_mask: Tensor | None, b: int, t: int
    ) -> Tensor:
        """Cross-attention of each frame to (itself, the text): ``(B*T, H*W, C)``."""
        if text is None:
            raise ValueError("text is required: the block was built with text_dim > 0")
        text = repeat(self.text_proj(text), "b l c -> (b t) l c", t=t)  # (B*T, L, C)
        n = tokens.shape[1]
        keep = torch.ones(text.shape[:2], dtype=torch.bool, device=text.device)
        if text_mask is not None:
            keep = repeat(text_mask.bool(), "b l -> (b t) l", t=t)
        keep = torch.cat([keep.new_ones(keep.shape[0], n), keep], dim=1)  # (B*T, N + L)
        bias = torch.zeros(keep.shape, dtype=tokens.dtype, device=tokens.device)
        bias = bias.masked_fill(~keep, float("-inf"))[:, None, None, None]  # (B*T, 1, 1, 1, N+L)
        return self.text_attn(self.text_norm(tokens)[:, None], text, bias)[:, 0]
