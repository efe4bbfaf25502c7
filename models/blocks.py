"""The W.A.L.T transformer block: windowed self-attention (S or ST), optional windowed
cross-attention to text, and an MLP, all under AdaLN modulation.

Spatial (S) blocks attend within ``1 x wh x ww`` windows (by default the whole latent frame);
spatiotemporal (ST) blocks within ``wt x wh x ww`` windows (default ``5 x 8 x 8``). Both add a
Swin relative position bias and use QK-norm (Gupta et al. 2023, Sec. 4.2).

Independent images inside a video grid (``groups``): in ST blocks a token only attends to tokens
of the same group, so an image frame attends to itself alone (the identity mask over time of
W.A.L.T's joint image-video training) and gives the same output as the image processed alone.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from models.adaln import AdaLNKind, BlockAdaLN, gate, modulate
from models.attention import AttnBackend, SelfAttention, WindowCrossAttention
from models.rel_pos import RelativePositionBias
from models.windows import (
    Size3,
    clip_window,
    mask_to_bias,
    window_key_valid,
    window_merge,
    window_partition,
    window_self_mask,
)

BlockKind = Literal["spatial", "spatiotemporal"]


class Mlp(nn.Module):
    """``Linear -> GELU(tanh) -> Linear`` (as in DiT)."""

    def __init__(self, *, dim: int, hidden: int) -> None:
        """Args:
        dim: input/output width.
        hidden: inner width.
        """
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class WindowBlock(nn.Module):
    """One S or ST block on a ``(B, t, h, w, D)`` token grid."""

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        kind: BlockKind,
        window: Size3 | None,
        table_window: Size3,
        mlp_ratio: float = 4.0,
        qk_norm: bool = True,
        adaln: AdaLNKind = "lora",
        adaln_lora_rank: int = 2,
        use_lora: bool = True,
        cross_attention: bool = False,
        attn_backend: AttnBackend | None = None,
    ) -> None:
        """Args:
        dim: width ``D``.
        num_heads: attention heads.
        kind: ``"spatial"`` (S) or ``"spatiotemporal"`` (ST).
        window: ``(wt, wh, ww)``; ``None`` = the whole frame (S blocks only). Clipped to the grid.
        table_window: window the relative-position table covers without interpolation
            (``window`` itself, or ``(1, h_max, w_max)`` for a whole-frame window).
        mlp_ratio: MLP inner width / ``D``.
        qk_norm: LayerNorm queries and keys per head.
        adaln: ``"lora"`` or ``"classic"``.
        adaln_lora_rank: LoRA rank ``r``.
        use_lora: whether this block adds its own LoRA update (``False`` for the first block).
        cross_attention: add window-restricted cross-attention to text (S blocks only).
        attn_backend: kernel override for every attention in the block.
        """
        super().__init__()
        if kind not in ("spatial", "spatiotemporal"):
            raise ValueError(f"block kind must be 'spatial' or 'spatiotemporal', got {kind!r}")
        if window is None and kind != "spatial":
            raise ValueError("only spatial blocks may use a whole-frame window (window=None)")
        if kind == "spatial" and window is not None and window[0] != 1:
            raise ValueError(f"a spatial window must span one frame, got {window}")
        if cross_attention and kind != "spatial":
            raise ValueError("text cross-attention is only used in spatial blocks")
        self.kind = kind
        self.window = None if window is None else tuple(window)
        self.adaln = BlockAdaLN(
            hidden_size=dim, kind=adaln, rank=adaln_lora_rank, use_lora=use_lora
        )
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(
            dim=dim, num_heads=num_heads, qk_norm=qk_norm, attn_backend=attn_backend
        )
        self.rel_pos = RelativePositionBias(window=table_window, num_heads=num_heads)
        self.norm_cross: nn.LayerNorm | None = None
        self.cross: WindowCrossAttention | None = None
        if cross_attention:
            self.norm_cross = nn.LayerNorm(dim, eps=1e-6)
            self.cross = WindowCrossAttention(
                dim=dim, num_heads=num_heads, qk_norm=qk_norm, attn_backend=attn_backend
            )
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim=dim, hidden=int(dim * mlp_ratio))

    def window_for(self, grid: Size3) -> Size3:
        """The window used on ``grid``: the configured one (or the whole frame), clipped."""
        window = (1, grid[1], grid[2]) if self.window is None else self.window
        return clip_window(window, grid)  # type: ignore[arg-type]

    def _self_attention(self, x: Tensor, groups: Tensor | None) -> Tensor:
        grid: Size3 = tuple(x.shape[1:4])  # type: ignore[assignment]
        window = self.window_for(grid)
        # Frames never mix in a one-frame window, so groups only matter for ST windows.
        groups = groups if window[0] > 1 else None
        bias = self.rel_pos(window).to(x.dtype)  # (heads, N, N)
        allowed = window_self_mask(grid, window, groups=groups, device=x.device)
        if allowed is not None:
            bias = bias + mask_to_bias(allowed, x.dtype)[:, :, None]  # (1|B, nW, heads, N, N)
        out = self.attn(window_partition(x, window), bias)  # (B, nW, N, D)
        return window_merge(out, window, grid)

    def _cross_attention(self, x: Tensor, text: Tensor, text_mask: Tensor) -> Tensor:
        grid: Size3 = tuple(x.shape[1:4])  # type: ignore[assignment]
        window = self.window_for(grid)
        windows = window_partition(x, window)  # (B, nW, N, D)
        n = windows.shape[2]
        own = window_key_valid(grid, window, device=x.device)[None, :, None, :]  # (1, nW, 1, N)
        own = own.expand(x.shape[0], -1, n, -1)  # (B, nW, N, N)
        txt = text_mask[:, None, None, :].expand(-1, own.shape[1], n, -1)  # (B, nW, N, L)
        allowed = torch.cat(
            [own, txt], dim=-1
        )  # (B, nW, N, N + L); a real query always sees itself
        bias = mask_to_bias(allowed, x.dtype)[:, :, None]  # (B, nW, 1, N, N + L)
        out = self.cross(windows, text, bias)  # type: ignore[misc]
        return window_merge(out, window, grid)

    def forward(
        self,
        x: Tensor,
        c_act: Tensor,
        shared_mod: Tensor | None,
        text: Tensor | None = None,
        text_mask: Tensor | None = None,
        groups: Tensor | None = None,
    ) -> Tensor:
        """Args:
        x: ``(B, t, h, w, D)`` tokens.
        c_act: SiLU of the conditioning vector, ``(B, D)``.
        shared_mod: the shared AdaLN-LoRA ``A_1`` ``(B, 6D)`` (``None`` under classic AdaLN).
        text: ``(B, L, D)`` projected text tokens (blocks with cross-attention only).
        text_mask: ``(B, L)`` bool, ``True`` = real token.
        groups: ``(B, t)`` long frame groups; tokens of different groups never attend to each
            other (``None`` = one group per sample).

        Returns:
            ``(B, t, h, w, D)``.
        """
        g1, g2, b1, b2, a1, a2 = self.adaln(c_act, shared_mod)
        x = x + gate(self._self_attention(modulate(self.norm1(x), b1, g1), groups), a1)
        if self.cross is not None and self.norm_cross is not None:
            if text is None or text_mask is None:
                raise ValueError("this block has text cross-attention but got no text tokens")
            x = x + self._cross_attention(self.norm_cross(x), text, text_mask)
        return x + gate(self.mlp(modulate(self.norm2(x), b2, g2)), a2)
