"""``WindowedDiT``: W.A.L.T's denoiser over patchified latents (Gupta et al. 2023, Sec. 4).

Latents ``(B, c, t, h, w)`` are concatenated on channels with the self-conditioning estimate
(``c`` channels) and the frame-prediction condition ``concat(m * z, m)`` (``c + 1`` channels)
and, in a super-resolution stage, the low-resolution latent upsampled 2x (``models.lowres``),
as every backbone does (``models.conditioning``), patchified with ``1 x p x p`` patches, given
learned spatial + temporal positions, and passed through alternating spatial (S) and spatiotemporal (ST) window blocks, starting with S. A final
AdaLN + zero-initialised linear head predicts ``p * p * c_out`` values per token, unpatchified
back to the latent shape.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from common.registry import register
from models.adaln import AdaLNKind, SharedAdaLN, modulate
from models.attention import AttnBackend
from models.blocks import WindowBlock
from models.conditioning import ConditionedBackbone
from models.embeddings import PosEmbed3D
from models.lowres import LowresUpsample
from models.registry import preset_config
from models.windows import Size3


class FinalLayer(nn.Module):
    """Final AdaLN (shift, scale) + zero-initialised linear to ``p * p * c_out`` (DiT)."""

    def __init__(self, *, hidden_size: int, out_dim: int) -> None:
        """Args:
        hidden_size: width ``D``.
        out_dim: values per token, ``p * p * c_out``.
        """
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Linear(hidden_size, 2 * hidden_size)
        self.linear = nn.Linear(hidden_size, out_dim)
        for layer in (self.modulation, self.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor, c_act: Tensor) -> Tensor:
        shift, scale = self.modulation(c_act).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


def _token_grid(max_latent_size: tuple[int, int, int], patch_size: int) -> Size3:
    """The ``(t, h / p, w / p)`` token grid the position tables are sized for."""
    t, h, w = max_latent_size
    if h % patch_size or w % patch_size:
        raise ValueError(
            f"max_latent_size {max_latent_size} does not divide by patch_size={patch_size}"
        )
    return (t, h // patch_size, w // patch_size)


@register("backbone")
class WindowedDiT(ConditionedBackbone):
    """Windowed diffusion transformer; see the module docstring and ``docs/models.md``.

    Args:
        in_channels: latent channels ``c`` of ``x``.
        out_channels: predicted channels (``None`` = ``in_channels``).
        patch_size: ``p`` for ``1 x p x p`` patches (1, as the paper finds best; 2 and 4 work).
        preset: a name of ``models.DIT_PRESETS`` (``tiny``, ``S``, ``B``, ``L``, ``XL``) giving
            ``hidden_size``, ``depth`` and ``num_heads`` where they are ``None``; ``None`` =
            give all three.
        hidden_size: width ``D`` (``None``: the preset's).
        depth: number of blocks; S and ST alternate, starting with S (``None``: the preset's).
        num_heads: attention heads (``None``: the preset's).
        mlp_ratio: MLP inner width / ``D``.
        num_classes: real classes (0 = no class conditioning); index ``num_classes`` is null.
        text_dim: width ``E`` of text embeddings (0 = no text, no cross-attention).
        text_pool_to_adaln: add the masked-mean pooled text to the AdaLN conditioning vector.
        num_extra_cond: scalar conditions per sample in ``extra_cond`` (0 = none).
        use_self_cond: accept a self-conditioning estimate (``c`` extra input channels).
        use_frame_cond: accept a frame condition ``concat(m * z, m)`` (``c + 1`` channels).
        lowres_channels: channels of the low-resolution latent a super-resolution stage is
            conditioned on (``c``; 0 = not an SR stage). It comes at half the latent ``h, w``,
            is upsampled 2x and concatenated to the input (W.A.L.T Sec. 4.5).
        lowres_upsample: ``"learned"`` (depth-to-space, the paper's), ``"nearest"`` or
            ``"bilinear"``.
        adaln: ``"lora"`` (W.A.L.T eq. 3) or ``"classic"`` (per-block AdaLN MLP).
        adaln_lora_rank: LoRA rank ``r``.
        spatial_window: ``(wh, ww)`` tokens of S windows; ``None`` = the whole frame.
        spatiotemporal_window: ``(wt, wh, ww)`` tokens of ST windows.
        max_latent_size: ``(t, h, w)`` latent grid (before patchify) that the position tables
            and relative-position tables are sized for; other sizes interpolate.
        qk_norm: LayerNorm queries and keys per head.
        grad_checkpointing: recompute block activations in the backward pass (training only).
        attn_backend: ``"sdpa" | "xformers" | "reference"``; ``None`` = module default.
    """

    def __init__(
        self,
        *,
        in_channels: int = 8,
        out_channels: int | None = None,
        patch_size: int = 1,
        preset: str | None = "L",
        hidden_size: int | None = None,
        depth: int | None = None,
        num_heads: int | None = None,
        mlp_ratio: float = 4.0,
        num_classes: int = 0,
        text_dim: int = 0,
        text_pool_to_adaln: bool = True,
        num_extra_cond: int = 0,
        use_self_cond: bool = True,
        use_frame_cond: bool = True,
        lowres_channels: int = 0,
        lowres_upsample: LowresUpsample = "learned",
        adaln: AdaLNKind = "lora",
        adaln_lora_rank: int = 2,
        spatial_window: tuple[int, int] | None = None,
        spatiotemporal_window: tuple[int, int, int] = (5, 8, 8),
        max_latent_size: tuple[int, int, int] = (5, 16, 16),
        qk_norm: bool = True,
        grad_checkpointing: bool = False,
        attn_backend: AttnBackend | None = None,
    ) -> None:
        sizes = preset_config(preset, hidden_size=hidden_size, depth=depth, num_heads=num_heads)
        grid = _token_grid(max_latent_size, patch_size)
        super().__init__(
            in_channels=in_channels, out_channels=out_channels, num_classes=num_classes,
            text_dim=text_dim, text_pool_to_adaln=text_pool_to_adaln,
            num_extra_cond=num_extra_cond, use_self_cond=use_self_cond,
            use_frame_cond=use_frame_cond, lowres_channels=lowres_channels,
            lowres_upsample=lowres_upsample,
        )
        width = sizes["hidden_size"]
        self.patch_size = patch_size
        self.adaln_kind: AdaLNKind = adaln
        self.grad_checkpointing = grad_checkpointing
        self.patch_embed = nn.Linear(self.input_width * patch_size**2, width)
        self.pos_embed = PosEmbed3D(grid=grid, hidden_size=width)
        self._build_embedders(width)
        self.shared_adaln = SharedAdaLN(hidden_size=width) if adaln == "lora" else None
        block = dict(
            hidden_size=width, num_heads=sizes["num_heads"], mlp_ratio=mlp_ratio,
            spatial_window=spatial_window, spatiotemporal_window=spatiotemporal_window,
            grid=grid, qk_norm=qk_norm, adaln_lora_rank=adaln_lora_rank,
            attn_backend=attn_backend,
        )
        self.blocks = nn.ModuleList(self._make_block(i, **block) for i in range(sizes["depth"]))
        self.final = FinalLayer(hidden_size=width, out_dim=patch_size**2 * self.out_channels)

    def _make_block(
        self,
        index: int,
        *,
        hidden_size: int,
        num_heads: int,
        mlp_ratio: float,
        spatial_window: tuple[int, int] | None,
        spatiotemporal_window: tuple[int, int, int],
        grid: Size3,
        qk_norm: bool,
        adaln_lora_rank: int,
        attn_backend: AttnBackend | None,
    ) -> WindowBlock:
        spatial = index % 2 == 0
        if spatial:
            window: Size3 | None = None if spatial_window is None else (1, *spatial_window)
            table = (1, grid[1], grid[2]) if window is None else window
        else:
            window = tuple(spatiotemporal_window)  # type: ignore[assignment]
            table = window  # type: ignore[assignment]
        return WindowBlock(
            dim=hidden_size,
            num_heads=num_heads,
            kind="spatial" if spatial else "spatiotemporal",
            window=window,
            table_window=table,
            mlp_ratio=mlp_ratio,
            qk_norm=qk_norm,
            adaln=self.adaln_kind,
            adaln_lora_rank=adaln_lora_rank,
            use_lora=index > 0,
            cross_attention=spatial and self.text_dim > 0,
            attn_backend=attn_backend,
        )

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> WindowedDiT:
        """Build a preset of ``models.DIT_PRESETS`` (``tiny``, ``S``, ``B``, ``L``, ``XL``)."""
        return cls(preset=name, **overrides)

    # ----------------------------------------------------------------------------------- inputs
    def _input_tokens(
        self, x: Tensor, self_cond: Tensor | None, frame_cond: Tensor | None,
        lowres: Tensor | None = None,
    ) -> Tensor:
        """Concatenate inputs on channels and patchify to ``(B, t, h/p, w/p, D)`` tokens."""
        inp = self._input_channels(x, self_cond, frame_cond, lowres)  # (B, c', t, h, w)
        p = self.patch_size
        tokens = rearrange(inp, "b c t (h p1) (w p2) -> b t h w (p1 p2 c)", p1=p, p2=p)
        return self.patch_embed(tokens)  # (B, t, h/p, w/p, D)

    def _check_x(self, x: Tensor, timesteps: Tensor) -> None:
        super()._check_x(x, timesteps)
        p = self.patch_size
        if x.shape[3] % p or x.shape[4] % p:
            raise ValueError(f"latent h, w = {tuple(x.shape[3:])} must divide by patch_size={p}")

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
        lowres: Tensor | None = None,
    ) -> Tensor:
        """Predict (v by default) for noisy latents.

        Args:
            x: ``(B, c, t, h, w)`` noisy latents; ``t = 1`` for images.
            timesteps: ``(B,)`` discrete step index ``0..999`` (float or long).
            class_labels: ``(B,)`` long; ``None`` or ``-1`` -> the learned null label.
            text_emb: ``(B, L, E)`` text embeddings; ``None`` -> the learned null text.
            text_mask: ``(B, L)`` bool, ``True`` = real token (``None`` = all real).
            self_cond: ``(B, c, t, h, w)`` self-conditioning x0 estimate; ``None`` -> zeros.
            frame_cond: ``(B, c + 1, t, h, w)`` = ``concat(m * z, m)``; ``None`` -> zeros.
            extra_cond: ``(B, num_extra_cond)`` scalar conditions (required when enabled).
            drop_class: ``(B,)`` bool, ``True`` -> null label (classifier-free guidance).
            drop_text: ``(B,)`` bool, ``True`` -> null text.
            image_frames: ``(B, t)`` bool, ``True`` marks frames that are independent images
                packed next to video frames: they use temporal position 0 and, in ST blocks,
                attend only to themselves. ``None`` = every sample is one clip.
            lowres: ``(B, lowres_channels, t, h/2, w/2)`` low-resolution latent of a
                super-resolution stage (required when ``lowres_channels > 0``).

        Returns:
            ``(B, c_out, t, h, w)``.
        """
        self._check_x(x, timesteps)
        b, _, t, h, w = x.shape
        cond, text, mask = self._conditioning(
            timesteps, b, class_labels=class_labels, drop_class=drop_class, text_emb=text_emb,
            text_mask=text_mask, drop_text=drop_text, extra_cond=extra_cond,
        )
        groups = self._frame_groups(image_frames, b, t, x.device)
        tokens = self._input_tokens(x, self_cond, frame_cond, lowres)  # (B, t, h', w', D)
        tokens = tokens + self.pos_embed(tuple(tokens.shape[1:4]), image_frames).to(tokens.dtype)
        c_act = F.silu(cond)
        shared = self.shared_adaln(c_act) if self.shared_adaln is not None else None
        for block in self.blocks:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                tokens = checkpoint(
                    block, tokens, c_act, shared, text, mask, groups, use_reentrant=False
                )
            else:
                tokens = block(tokens, c_act, shared, text, mask, groups)
        out = self.final(tokens, c_act)  # (B, t, h', w', p*p*c_out)
        p = self.patch_size
        return rearrange(out, "b t h w (p1 p2 c) -> b c t (h p1) (w p2)", p1=p, p2=p)

    @staticmethod
    def _frame_groups(
        image_frames: Tensor | None, b: int, t: int, device: torch.device
    ) -> Tensor | None:
        """``(B, t)`` group ids: video frames share group 0, image frame ``i`` gets ``i + 1``."""
        if image_frames is None:
            return None
        if tuple(image_frames.shape) != (b, t):
            raise ValueError(f"image_frames must be ({b}, {t}), got {tuple(image_frames.shape)}")
        ids = torch.arange(1, t + 1, device=device)[None].expand(b, t)
        return torch.where(image_frames.to(device).bool(), ids, torch.zeros_like(ids))

    # ---------------------------------------------------------------------------- fine-tuning
    def resize_pos_embed(self, latent_size: tuple[int, int, int]) -> None:
        """Re-grid the absolute position tables to a new latent ``(t, h, w)`` (before patchify)."""
        t, h, w = latent_size
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"latent_size {latent_size} does not divide by patch_size={p}")
        self.pos_embed.resize((t, h // p, w // p))

    def set_windows(
        self, *, spatial_window: tuple[int, int] | None, spatiotemporal_window: tuple[int, int, int]
    ) -> None:
        """Change the attention windows (e.g. 5x8x8 -> 5x8x14 for 128x224) and re-grid the
        relative-position tables of blocks whose window grows."""
        for block in self.blocks:
            if block.kind == "spatial":
                block.window = None if spatial_window is None else (1, *spatial_window)
                new = block.window
                if new is None:
                    _, h, w = self.pos_embed.grid
                    new = (1, h, w)
            else:
                block.window = tuple(spatiotemporal_window)
                new = block.window
            if new != block.rel_pos.window:
                block.rel_pos.resize(new)
