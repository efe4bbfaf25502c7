"""Attention kernels behind one switch, plus the QK-normed multi-head attention layers.

Three interchangeable backends compute ``softmax(q k^T / sqrt(d) + bias) v``:

- ``"sdpa"``: ``torch.nn.functional.scaled_dot_product_attention`` (default);
- ``"xformers"``: ``xformers.ops.memory_efficient_attention`` (only when xformers is installed and
  the tensors live on CUDA);
- ``"reference"``: plain matmul + softmax, the ground truth the other two are tested against.

The backend is decided once by :func:`default_attn_backend` (environment override
``WALT_ATTN_BACKEND=sdpa|xformers|reference``) and can be overridden per module.

Every kernel takes ``q, k, v`` of shape ``(..., heads, N, d)`` / ``(..., heads, Nk, d)`` and an
optional additive float ``bias`` broadcastable to ``(..., heads, N, Nk)`` (``-inf`` = masked).
Callers guarantee that no query row is fully masked (see ``models/windows.py``), so no kernel
ever produces NaN.
"""

from __future__ import annotations

import abc
import importlib.util
import os
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from models.bias_grad_attention import bias_grad_attention

AttnBackend = Literal["sdpa", "xformers", "reference"]
ATTN_BACKENDS: tuple[str, ...] = ("sdpa", "xformers", "reference")
ENV_VAR = "WALT_ATTN_BACKEND"


def xformers_available() -> bool:
    """True when the ``xformers`` package can be imported (CUDA is checked per call)."""
    return importlib.util.find_spec("xformers") is not None


def default_attn_backend() -> AttnBackend:
    """The backend used when a module is not given one: ``$WALT_ATTN_BACKEND`` or ``"sdpa"``.

    Raises:
        ValueError: the environment variable names an unknown backend.
    """
    name = os.environ.get(ENV_VAR, "sdpa").strip().lower()
    if name not in ATTN_BACKENDS:
        raise ValueError(f"{ENV_VAR}={name!r} is not one of {ATTN_BACKENDS}")
    if name == "xformers" and not xformers_available():
        raise ValueError(f"{ENV_VAR}=xformers but the xformers package is not installed")
    return name  # type: ignore[return-value]


def _reference_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None) -> Tensor:
    scores = torch.matmul(q, k.transpose(-2, -1)) * q.shape[-1] ** -0.5  # (..., heads, N, Nk)
    if bias is not None:
        scores = scores + bias
    # Softmax in float32: the reference must stay exact in low precision too.
    probs = scores.float().softmax(dim=-1).to(v.dtype)
    return torch.matmul(probs, v)


def _sdpa_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None) -> Tensor:
    """4-D ``(b, heads, N, d)`` inputs, 4-D bias."""
    if bias is not None:
        bias = bias.to(q.dtype)
        if _needs_bias_grad_kernel(q, bias):
            return bias_grad_attention(q, k, v, bias)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


def _needs_bias_grad_kernel(q: Tensor, bias: Tensor) -> bool:
    """CPU SDPA has no fused kernel for a bias that needs a gradient (its math path is ~2x
    slower and stores every probability); CUDA's memory-efficient kernel handles it, and under
    ``torch.compile`` Inductor picks its own kernel."""
    return (
        q.device.type == "cpu"
        and bias.requires_grad
        and torch.is_grad_enabled()
        and bias.ndim == 4
        and not torch.compiler.is_compiling()
    )


def _xformers_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None) -> Tensor:
    try:
        import xformers.ops as xops  # optional CUDA backend (the `cuda` extra)
    except ImportError as err:
        raise RuntimeError("attn_backend='xformers' but xformers cannot be imported") from err
    if not q.is_cuda:
        raise RuntimeError("attn_backend='xformers' needs CUDA tensors; got " + str(q.device))
    b, heads, n, _ = q.shape
    nk = k.shape[-2]
    # xformers wants (batch, tokens, heads, d) and a fully materialised (batch, heads, N, Nk) bias.
    q3, k3, v3 = (rearrange(x, "b h n d -> b n h d") for x in (q, k, v))
    attn_bias = None
    if bias is not None:
        # The kernel needs the bias' last dim allocated to a multiple of 8; slice a padded buffer.
        nk_pad = (nk + 7) // 8 * 8
        buf = q.new_zeros((b, heads, n, nk_pad))
        buf[..., :nk] = bias.to(q.dtype).expand(b, heads, n, nk)
        attn_bias = buf[..., :nk]
    out = xops.memory_efficient_attention(q3, k3, v3, attn_bias=attn_bias)  # (b, N, heads, d)
    return rearrange(out, "b n h d -> b h n d")


def attention(
    q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None = None, *, backend: AttnBackend
) -> Tensor:
    """Scaled dot-product attention with an additive bias, through the named backend.

    Args:
        q: ``(..., heads, N, d)`` queries.
        k: ``(..., heads, Nk, d)`` keys.
        v: ``(..., heads, Nk, d)`` values.
        bias: additive float bias broadcastable to ``(..., heads, N, Nk)``; ``-inf`` masks a key.
        backend: one of ``ATTN_BACKENDS``.

    Returns:
        ``(..., heads, N, d)``.
    """
    if backend not in ATTN_BACKENDS:
        raise ValueError(f"unknown attention backend {backend!r}; expected one of {ATTN_BACKENDS}")
    if backend == "reference":
        return _reference_attention(q, k, v, bias)
    # Fused kernels want 4-D (batch, heads, N, d); with more leading dims SDPA falls back to a
    # much slower path, so fold the window axis into the batch.
    lead, (heads, n, d) = q.shape[:-3], q.shape[-3:]
    q4, k4, v4 = (x.reshape(-1, heads, x.shape[-2], d) for x in (q, k, v))
    bias4 = None if bias is None else _flatten_bias(bias, lead)
    kernel = _sdpa_attention if backend == "sdpa" else _xformers_attention
    return kernel(q4, k4, v4, bias4).reshape(*lead, heads, n, d)


def _flatten_bias(bias: Tensor, lead: torch.Size) -> Tensor:
    """Bias broadcastable to ``(*lead, heads, N, Nk)`` -> 4-D, expanding only when needed."""
    if bias.ndim <= 3 or all(s == 1 for s in bias.shape[:-3]):
        return bias.reshape(1, *bias.shape[-3:]) if bias.ndim >= 3 else bias
    full = bias.expand(*lead, *bias.shape[-3:])
    return full.reshape(-1, *bias.shape[-3:])


class _MultiHead(nn.Module, abc.ABC):
    """What both attention layers share: the constructor, head split, optional QK-norm, kernel
    choice, output projection. Subclasses add their input projections in :meth:`_projections`."""

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        qk_norm: bool = True,
        attn_backend: AttnBackend | None = None,
    ) -> None:
        """Args:
        dim: model width ``D``; must divide by ``num_heads`` (cross-attention: the text is
            projected to ``D`` by the model beforehand).
        num_heads: attention heads.
        qk_norm: LayerNorm queries and keys per head.
        attn_backend: kernel override; ``None`` = :func:`default_attn_backend`.
        """
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} does not divide by num_heads={num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.backend: AttnBackend = attn_backend or default_attn_backend()
        self.q_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)
        self._projections(dim)

    @abc.abstractmethod
    def _projections(self, dim: int) -> None:
        """Build the q/k/v projections: fused for self-attention, split for cross-attention."""


class SelfAttention(_MultiHead):
    """Multi-head self-attention with QK-norm over pre-grouped windows.

    QK-norm (LayerNorm on each head's queries and keys) keeps attention logits bounded, which
    W.A.L.T (Gupta et al. 2023, Sec. 5.4) reports as important for stable training at scale.
    """

    def _projections(self, dim: int) -> None:
        self.qkv = nn.Linear(dim, 3 * dim)

    def forward(self, x: Tensor, bias: Tensor | None = None) -> Tensor:
        """``x``: ``(..., N, D)`` windows; ``bias`` broadcastable to ``(..., heads, N, N)``."""
        qkv = rearrange(
            self.qkv(x), "... n (three h d) -> three ... h n d", three=3, h=self.num_heads
        )
        # unbind, not qkv[0..2]: its backward stacks the three gradients in one write, where
        # indexing zero-fills a 3x-sized gradient per slice and adds them.
        q, k, v = qkv.unbind(0)  # (..., heads, N, d) each
        q, k = self.q_norm(q), self.k_norm(k)
        out = attention(q, k, v, bias, backend=self.backend)
        return self.proj(rearrange(out, "... h n d -> ... n (h d)"))  # (..., N, D)


class WindowCrossAttention(_MultiHead):
    """Cross-attention whose keys/values are ``concat(the window's own tokens, the text tokens)``.

    This is W.A.L.T's window-restricted cross-attention (Gupta et al. 2023, Sec. 4.3): each spatial
    window attends to itself and to the caption, so text conditioning stays local and cheap.
    The output projection starts at zero, so the layer starts as a no-op on the residual stream.
    """

    def _projections(self, dim: int) -> None:
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor, text: Tensor, bias: Tensor | None = None) -> Tensor:
        """Args:
        x: ``(B, nW, N, D)`` window tokens.
        text: ``(B, L, D)`` projected text tokens.
        bias: broadcastable to ``(B, nW, heads, N, N + L)``.
        """
        # Project the text once, then share it with every window.
        kv_text = self.kv(text)[:, None].expand(-1, x.shape[1], -1, -1)  # (B, nW, L, 2D)
        kv_in = torch.cat([self.kv(x), kv_text], dim=-2)  # (B, nW, N + L, 2D)
        q = rearrange(self.q(x), "... n (h d) -> ... h n d", h=self.num_heads)
        kv = rearrange(kv_in, "... n (two h d) -> two ... h n d", two=2, h=self.num_heads)
        k, v = kv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        out = attention(q, k, v, bias, backend=self.backend)  # (B, nW, heads, N, d)
        return self.proj(rearrange(out, "... h n d -> ... n (h d)"))
