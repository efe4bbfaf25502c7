"""``WindowedDiT``: W.A.L.T's denoiser over patchified latents (Gupta et al. 2023, Sec. 4).

Latents ``(B, c, t, h, w)`` are concatenated on channels with the self-conditioning estimate
(``c`` channels) and the frame-prediction condition ``concat(m * z, m)`` (``c + 1`` channels) and, in a super-resolution stage, the low-resolution latent upsampled 2x
(``models.lowres``), patchified with ``1 x p x p`` patches, given learned spatial + temporal positions, and passed
through alternating spatial (S) and spatiotemporal (ST) window blocks, starting with S. A final
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
from models.embeddings import (
    ClassEmbedder,
    PosEmbed3D,
    ScalarConditionEmbedder,
    TextConditioner,
    TimestepEmbedder,
)
from models.lowres import LowresUpsample, LowresUpsampler
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


@register("backbone")
class WindowedDiT(nn.Module):
    """Windowed diffusion transformer; see the module docstring and ``docs/models.md``."""

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
        """Args:
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
        super().__init__()
        sizes = preset_config(preset, hidden_size=hidden_size, depth=depth, num_heads=num_heads)
        hidden_size, depth, num_heads = sizes["hidden_size"], sizes["depth"], sizes["num_heads"]
        t_max, h_max, w_max = max_latent_size
        if h_max % patch_size or w_max % patch_size:
            raise ValueError(
                f"max_latent_size {max_latent_size} does not divide by patch_size={patch_size}"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels or in_channels
        self.patch_size = patch_size
        self.num_classes = num_classes
        self.text_dim = text_dim
        self.num_extra_cond = num_extra_cond
        self.use_self_cond = use_self_cond
        self.use_frame_cond = use_frame_cond
        self.adaln_kind: AdaLNKind = adaln
        self.grad_checkpointing = grad_checkpointing
        self.text_pool_to_adaln = text_pool_to_adaln
        self.lowres_channels = lowres_channels
        self.lowres_upsampler = (
            LowresUpsampler(channels=lowres_channels, mode=lowres_upsample)
            if lowres_channels > 0
            else None
        )
        channels = in_channels * (2 if use_self_cond else 1) + (in_channels + 1) * use_frame_cond
        channels += lowres_channels
        self.patch_embed = nn.Linear(channels * patch_size**2, hidden_size)
        grid = (t_max, h_max // patch_size, w_max // patch_size)
        self.pos_embed = PosEmbed3D(grid=grid, hidden_size=hidden_size)
        self.t_embed = TimestepEmbedder(hidden_size=hidden_size)
        self.class_embed = (
            ClassEmbedder(num_classes=num_classes, hidden_size=hidden_size)
            if num_classes > 0
            else None
        )
        self.text_cond = (
            TextConditioner(text_dim=text_dim, hidden_size=hidden_size) if text_dim > 0 else None
        )
        self.extra_embed = (
            ScalarConditionEmbedder(num_conds=num_extra_cond, hidden_size=hidden_size)
            if num_extra_cond > 0
            else None
        )
        self.shared_adaln = SharedAdaLN(hidden_size=hidden_size) if adaln == "lora" else None
        self.blocks = nn.ModuleList(
            self._make_block(
                i,
                hidden_size=hidden_size,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                spatial_window=spatial_window,
                spatiotemporal_window=spatiotemporal_window,
                grid=grid,
                qk_norm=qk_norm,
                adaln_lora_rank=adaln_lora_rank,
                attn_backend=attn_backend,
            )
            for i in range(depth)
        )
        self.final = FinalLayer(hidden_size=hidden_size, out_dim=patch_size**2 * self.out_channels)

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
    def _check_cond(
        self, name: str, cond: Tensor | None, x: Tensor, channels: int, enabled: bool
    ) -> Tensor | None:
        if cond is None:
            return None
        if not enabled:
            raise ValueError(f"{name} given but the model was built with use_{name}=False")
        expected = (x.shape[0], channels, *x.shape[2:])
        if tuple(cond.shape) != expected:
            raise ValueError(f"{name} must have shape {expected}, got {tuple(cond.shape)}")
        return cond

    def _input_tokens(
        self, x: Tensor, self_cond: Tensor | None, frame_cond: Tensor | None,
        lowres: Tensor | None = None,
    ) -> Tensor:
        """Concatenate inputs on channels and patchify to ``(B, t, h/p, w/p, D)`` tokens."""
        b, c, t, h, w = x.shape
        parts = [x]
        if self.use_self_cond:
            sc = self._check_cond("self_cond", self_cond, x, c, True)
            parts.append(torch.zeros_like(x) if sc is None else sc.to(x.dtype))
        else:
            self._check_cond("self_cond", self_cond, x, c, False)
        if self.use_frame_cond:
            fc = self._check_cond("frame_cond", frame_cond, x, c + 1, True)
            parts.append(x.new_zeros((b, c + 1, t, h, w)) if fc is None else fc.to(x.dtype))
        else:
            self._check_cond("frame_cond", frame_cond, x, c + 1, False)
        parts += self._lowres_part(lowres, x)
        inp = torch.cat(parts, dim=1)  # (B, c', t, h, w)
        p = self.patch_size
        tokens = rearrange(inp, "b c t (h p1) (w p2) -> b t h w (p1 p2 c)", p1=p, p2=p)
        return self.patch_embed(tokens)  # (B, t, h/p, w/p, D)

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

    def _check_x(self, x: Tensor, timesteps: Tensor) -> None:
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must be (B, {self.in_channels}, t, h, w), got {tuple(x.shape)}")
        p = self.patch_size
        if x.shape[3] % p or x.shape[4] % p:
            raise ValueError(f"latent h, w = {tuple(x.shape[3:])} must divide by patch_size={p}")
        if timesteps.shape != (x.shape[0],):
            raise ValueError(f"timesteps must be ({x.shape[0]},), got {tuple(timesteps.shape)}")

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
        """The AdaLN conditioning vector ``(B, D)``, text tokens ``(B, L, D)`` and their mask."""
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
            timesteps,
            b,
            class_labels=class_labels,
            drop_class=drop_class,
            text_emb=text_emb,
            text_mask=text_mask,
            drop_text=drop_text,
            extra_cond=extra_cond,
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
