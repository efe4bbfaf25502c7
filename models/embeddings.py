"""Conditioning and position embeddings of the windowed DiT.

- timesteps and scalar conditions: sinusoidal features + MLP (DiT, Peebles & Xie 2023);
- class labels: a table with one extra learned *null* row (index ``num_classes``) for
  classifier-free guidance;
- text: a learned null token for dropped/absent captions, a token projection for the
  cross-attention, and a masked-mean pooled vector that is added to the AdaLN input;
- positions: learned absolute spatial + temporal tables (W.A.L.T, Gupta et al. 2023, Sec. 4.2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from models.windows import Size3


def sinusoidal_embedding(x: Tensor, dim: int, *, max_period: float = 10_000.0) -> Tensor:
    """``(...)`` float -> ``(..., dim)`` cos/sin features at geometric frequencies."""
    if dim % 2:
        raise ValueError(f"sinusoidal embedding dim must be even, got {dim}")
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, device=x.device, dtype=torch.float32) / half
    )
    args = x.float()[..., None] * freqs  # (..., half)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


# Initial std of the learned class and position tables. ViT's usual 0.02 leaves both invisible
# next to the timestep embedding and the noise tokens: at high noise a LayerNormed token is
# ~98% noise, so it cannot tell where (or when) it is, and AdaLN's per-channel modulation can
# then set what is drawn (colour) but not where it goes (shape, motion direction). DiT
# (Peebles & Xie 2023) uses fixed unit-scale sin-cos positions for the same reason.
CLASS_INIT_STD = 1.0
POS_INIT_STD = 0.5


def _mlp(in_dim: int, dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, dim), nn.SiLU(), nn.Linear(dim, dim))


class TimestepEmbedder(nn.Module):
    """Diffusion time -> ``(B, D)``. Expects the discrete step index ``0..999`` (as float)."""

    def __init__(self, *, hidden_size: int, freq_dim: int = 256) -> None:
        """Args:
        hidden_size: output width ``D``.
        freq_dim: sinusoidal feature width.
        """
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = _mlp(freq_dim, hidden_size)

    def forward(self, timesteps: Tensor) -> Tensor:
        """``(B,)`` -> ``(B, D)``."""
        return self.mlp(sinusoidal_embedding(timesteps, self.freq_dim).to(self.mlp[0].weight.dtype))


class ScalarConditionEmbedder(nn.Module):
    """``n`` scalar conditions (fps, stride, SR noise level, ...) -> ``(B, D)``.

    Each scalar gets its own sinusoidal features; the concatenation goes through one MLP. Scalars
    should be on a scale of roughly ``0..1000`` like the timesteps (e.g. fps as is, an SR noise
    level as a step index).
    """

    def __init__(self, *, num_conds: int, hidden_size: int, freq_dim: int = 256) -> None:
        """Args:
        num_conds: number of scalars per sample.
        hidden_size: output width ``D``.
        freq_dim: sinusoidal feature width per scalar.
        """
        super().__init__()
        self.num_conds = num_conds
        self.freq_dim = freq_dim
        self.mlp = _mlp(num_conds * freq_dim, hidden_size)

    def forward(self, cond: Tensor) -> Tensor:
        """``(B, n)`` -> ``(B, D)``."""
        feats = sinusoidal_embedding(cond, self.freq_dim)  # (B, n, F)
        return self.mlp(rearrange(feats, "b n f -> b (n f)").to(self.mlp[0].weight.dtype))


class ClassEmbedder(nn.Module):
    """Class label -> ``(B, D)``; row ``num_classes`` is the learned null label."""

    def __init__(self, *, num_classes: int, hidden_size: int) -> None:
        """Args:
        num_classes: number of real classes (``> 0``).
        hidden_size: output width ``D``.
        """
        super().__init__()
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, hidden_size)
        nn.init.normal_(self.table.weight, std=CLASS_INIT_STD)

    def forward(self, labels: Tensor | None, drop: Tensor | None, batch: int) -> Tensor:
        """Args:
        labels: ``(B,)`` long in ``[-1, num_classes)``; ``-1`` (no label, see the batch
            conventions) and ``None`` mean the null label.
        drop: ``(B,)`` bool, ``True`` -> null label.
        batch: ``B``, used when ``labels`` is ``None``.
        """
        device = self.table.weight.device
        null = torch.full((batch,), self.num_classes, dtype=torch.long, device=device)
        if labels is None:
            return self.table(null)
        if labels.shape != (batch,) or labels.dtype not in (torch.long, torch.int32, torch.int64):
            raise ValueError(
                f"class_labels must be ({batch},) long, got {tuple(labels.shape)} {labels.dtype}"
            )
        if not torch.compiler.is_compiling():
            bad = (labels < -1) | (labels >= self.num_classes)
            if bool(bad.any()):
                raise ValueError(
                    f"class_labels outside [-1, {self.num_classes}): {labels[bad].tolist()}"
                )
        labels = torch.where(labels < 0, null, labels.long())
        if drop is not None:
            labels = torch.where(drop.bool(), null, labels)
        return self.table(labels)


class TextConditioner(nn.Module):
    """Text embeddings -> cross-attention tokens ``(B, L, D)``, their mask and a pooled ``(B, D)``.

    A dropped or absent caption is replaced by one learned null token (``text_mask`` keeps only
    its first position), so the result does not depend on the padded length ``L``.
    """

    def __init__(self, *, text_dim: int, hidden_size: int) -> None:
        """Args:
        text_dim: width ``E`` of the incoming text embeddings.
        hidden_size: model width ``D``.
        """
        super().__init__()
        self.text_dim = text_dim
        self.null = nn.Parameter(torch.randn(text_dim) * 0.02)
        self.proj = nn.Sequential(
            nn.Linear(text_dim, hidden_size),
            nn.GELU(approximate="tanh"),
            nn.Linear(hidden_size, hidden_size),
        )
        self.pool = nn.Linear(hidden_size, hidden_size)

    def _with_null(
        self, text_emb: Tensor | None, text_mask: Tensor | None, drop: Tensor | None, batch: int
    ) -> tuple[Tensor, Tensor]:
        if text_emb is None:
            emb = self.null.expand(batch, 1, -1)
            return emb, torch.ones((batch, 1), dtype=torch.bool, device=emb.device)
        if text_emb.ndim != 3 or text_emb.shape[0] != batch or text_emb.shape[2] != self.text_dim:
            raise ValueError(
                f"text_emb must be ({batch}, L, {self.text_dim}), got {tuple(text_emb.shape)}"
            )
        length = text_emb.shape[1]
        if text_mask is None:
            text_mask = torch.ones((batch, length), dtype=torch.bool, device=text_emb.device)
        elif text_mask.shape != (batch, length):
            raise ValueError(f"text_mask must be ({batch}, {length}), got {tuple(text_mask.shape)}")
        text_mask = text_mask.bool()
        if drop is not None:
            drop = drop.bool()
            null_mask = torch.arange(length, device=text_emb.device) == 0  # (L,)
            text_emb = torch.where(drop[:, None, None], self.null.to(text_emb.dtype), text_emb)
            text_mask = torch.where(drop[:, None], null_mask, text_mask)
        return text_emb, text_mask

    def forward(
        self, text_emb: Tensor | None, text_mask: Tensor | None, drop: Tensor | None, batch: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Returns ``tokens (B, L, D)``, ``mask (B, L)`` bool and ``pooled (B, D)``."""
        emb, mask = self._with_null(text_emb, text_mask, drop, batch)
        tokens = self.proj(emb.to(self.null.dtype))  # (B, L, D)
        weights = mask.to(tokens.dtype)[..., None]  # (B, L, 1)
        pooled = (tokens * weights).sum(1) / weights.sum(1).clamp_min(1.0)  # (B, D)
        return tokens, mask, self.pool(pooled)


class PosEmbed3D(nn.Module):
    """Learned absolute positions = spatial table ``(h, w, D)`` + temporal table ``(t, D)``.

    Grids other than the table's size (in latent tokens, after patchify):

    - time: ``t <= t_max`` uses the first ``t`` entries (an image, ``t = 1``, gets entry 0, and
      latent frame ``i`` always means the same time in the causal latent); ``t > t_max``
      linearly interpolates the table;
    - space: any other ``(h, w)`` bilinearly interpolates the spatial table on the fly (how
      W.A.L.T fine-tunes 128x128 -> 128x224). :meth:`resize` makes such a change permanent.
    """

    def __init__(self, *, grid: Size3, hidden_size: int) -> None:
        """Args:
        grid: ``(t, h, w)`` token grid the tables cover.
        hidden_size: width ``D``.
        """
        super().__init__()
        t, h, w = grid
        self.spatial = nn.Parameter(torch.zeros(h, w, hidden_size))
        self.temporal = nn.Parameter(torch.zeros(t, hidden_size))
        nn.init.trunc_normal_(self.spatial, std=POS_INIT_STD, a=-2 * POS_INIT_STD, b=2 * POS_INIT_STD)
        nn.init.trunc_normal_(self.temporal, std=POS_INIT_STD, a=-2 * POS_INIT_STD, b=2 * POS_INIT_STD)

    @property
    def grid(self) -> Size3:
        return (self.temporal.shape[0], self.spatial.shape[0], self.spatial.shape[1])

    def _spatial(self, h: int, w: int) -> Tensor:
        if (h, w) == tuple(self.spatial.shape[:2]):
            return self.spatial
        table = rearrange(self.spatial, "h w d -> 1 d h w")
        table = F.interpolate(table, size=(h, w), mode="bilinear", align_corners=False)
        return rearrange(table, "1 d h w -> h w d")

    def _temporal(self, t: int) -> Tensor:
        if t <= self.temporal.shape[0]:
            return self.temporal[:t]
        table = rearrange(self.temporal, "t d -> 1 d t")
        table = F.interpolate(table, size=t, mode="linear", align_corners=True)
        return rearrange(table, "1 d t -> t d")

    def resize(self, grid: Size3) -> None:
        """Permanently re-grid both tables to ``grid`` (interpolating, never cropping)."""
        t, h, w = grid
        with torch.no_grad():
            spatial = self._spatial(h, w).clone()
            table = rearrange(self.temporal, "t d -> 1 d t")
            temporal = rearrange(
                F.interpolate(table, size=t, mode="linear", align_corners=True), "1 d t -> t d"
            ).clone()
        self.spatial = nn.Parameter(spatial)
        self.temporal = nn.Parameter(temporal)

    def forward(self, grid: Size3, image_frames: Tensor | None = None) -> Tensor:
        """Args:
        grid: ``(t, h, w)`` token grid.
        image_frames: ``(B, t)`` bool; ``True`` frames are independent images and use temporal
            entry 0.

        Returns:
            ``(1 or B, t, h, w, D)``.
        """
        t, h, w = grid
        temporal = self._temporal(t)  # (t, D)
        if image_frames is None:
            temporal = temporal[None]  # (1, t, D)
        else:
            temporal = torch.where(image_frames[..., None].bool(), self.temporal[0], temporal)
        return self._spatial(h, w)[None, None] + temporal[:, :, None, None, :]
