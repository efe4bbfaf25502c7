"""CPU attention with a learnable additive bias: fused forward, chunked exact backward.

On CPU, ``F.scaled_dot_product_attention`` only has a fused (flash) kernel for biases that need
no gradient. A learnable relative position bias (Swin / W.A.L.T) sends every window attention to
SDPA's math path, which materialises the ``(B, heads, N, N)`` probabilities in the forward pass,
runs a full-size softmax and its backward, and keeps it all for autograd. On whole-frame windows
that is most of the attention time and memory.

:class:`BiasGradAttention` instead runs the fused flash kernel forward (which saves only the
per-row log-sum-exp) and recomputes the probabilities in the backward pass one chunk of
``(window, head)`` rows at a time, producing every gradient from the same chunk (FlashAttention-2,
Dao 2023, Alg. 2, at chunk rather than tile granularity):

    P  = exp(q k^T * scale + bias - lse)         recomputed, one chunk at a time
    dv = P^T dO
    dP = dO v^T
    dS = P * (dP - rowsum(dO * O))               the softmax backward
    dbias = sum over the bias' broadcast dims of dS
    dq = dS k * scale,  dk = dS^T q * scale

Peak extra memory is one chunk of scores, not the whole batch of them. Results equal the math
path to float tolerance (``tests/test_models_attention.py``).
"""

from __future__ import annotations

import torch
from torch import Tensor

# Scores per backward chunk (float32: 4 bytes each); sized to stay near the CPU caches while
# keeping each matmul large enough to run at full speed.
CHUNK_ELEMENTS = 1 << 21


class BiasGradAttention(torch.autograd.Function):
    """``softmax(q k^T / sqrt(d) + bias) v`` for 4-D CPU tensors with a bias that needs a gradient.

    ``q``: ``(B, heads, N, d)``; ``k, v``: ``(B, heads, Nk, d)``; ``bias``: ``(Bb, Hb, N, Nk)``
    with ``Bb`` in ``{1, B}`` and ``Hb`` in ``{1, heads}`` (``-inf`` masks a key; no row may be
    fully masked).
    """

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> Tensor:  # type: ignore[override]
        scale = q.shape[-1] ** -0.5
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q, k, v, 0.0, False, attn_mask=bias, scale=scale
        )  # out (B, heads, N, d), lse (B, heads, N)
        ctx.save_for_backward(q, k, v, bias, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        q, k, v, bias, out, lse = ctx.saved_tensors
        return _chunked_backward(grad_out, q, k, v, bias, out, lse)


def _chunked_backward(
    go: Tensor, q: Tensor, k: Tensor, v: Tensor, bias: Tensor, out: Tensor, lse: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    b, heads, n, d = q.shape
    nk = k.shape[-2]
    scale = d**-0.5
    bb, hb = bias.shape[0], bias.shape[1]
    # Chunks run over (batch, head) rows together, so many short sequences (e.g. temporal
    # attention at every pixel) still make few, large matmuls.
    qf, kf, vf, gf = (x.reshape(b * heads, -1, d) for x in (q, k, v, go))  # (B*heads, N|Nk, d)
    lsef = lse.reshape(b * heads, n, 1)
    delta = (go.float() * out.float()).sum(-1).reshape(b * heads, n, 1).to(q.dtype)
    rows = torch.arange(b * heads, device=q.device)
    bias_row = (rows // heads) * (bb > 1) * hb + (rows % heads) * (hb > 1)  # row -> bias row
    biasf = bias.reshape(bb * hb, n, nk)
    dq, dk, dv = torch.empty_like(qf), torch.empty_like(kf), torch.empty_like(vf)
    dbias = torch.zeros((bb * hb, n, nk), dtype=torch.float32, device=bias.device)
    step = max(1, CHUNK_ELEMENTS // (n * nk))
    for r0 in range(0, b * heads, step):
        rs = slice(r0, min(r0 + step, b * heads))
        qc, kc, vc, gc = qf[rs], kf[rs], vf[rs], gf[rs]  # (rows, N|Nk, d)
        scores = torch.baddbmm(biasf[bias_row[rs]], qc, kc.transpose(1, 2), alpha=scale)
        probs = scores.sub_(lsef[rs]).exp_()  # (rows, N, Nk)
        dv[rs] = torch.bmm(probs.transpose(1, 2), gc)
        dscores = torch.bmm(gc, vc.transpose(1, 2)).sub_(delta[rs]).mul_(probs)
        dq[rs] = torch.bmm(dscores, kc).mul_(scale)
        dk[rs] = torch.bmm(dscores.transpose(1, 2), qc).mul_(scale)
        dbias.index_add_(0, bias_row[rs], dscores.float())
    shapes = (q.shape, k.shape, v.shape)
    dq, dk, dv = (g.reshape(shape) for g, shape in zip((dq, dk, dv), shapes))
    return dq, dk, dv, dbias.reshape(bias.shape).to(bias.dtype)


def bias_grad_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> Tensor:
    """Apply :class:`BiasGradAttention` (see the module docstring)."""
    return BiasGradAttention.apply(q, k, v, bias)
