"""CPU attention with a learnable additive bias: fused forward, chunked exact backward.

On CPU, ``F.scaled_dot_product_attention`` only has a fused (flash) kernel for biases that need
no gradient. A learnable relative position bias (Swin / W.A.L.T) sends every window attention to
SDPA's math path, which materialises the ``(B, heads, N, N)`` probabilities in the forward pass,
runs a full-size softmax and its backward, and keeps it all for autograd. On whole-frame windows
that is most of the attention time and memory.

:class:`BiasGradAttention` instead runs the fused flash kernel forward (which saves only the
per-row log-sum-exp) and recomputes the probabilities in the backward pass one chunk of
``(window, heads)`` at a time, producing every gradient from the same chunk (FlashAttention-2,
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
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    dbias = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device)
    delta = (go.float() * out.float()).sum(-1, keepdim=True).to(q.dtype)  # (B, heads, N, 1)
    step = max(1, min(heads, CHUNK_ELEMENTS // (n * nk)))
    for i in range(b):
        bias_i = bias[i if bias.shape[0] > 1 else 0]  # (Hb, N, Nk)
        for h0 in range(0, heads, step):
            hs = slice(h0, min(h0 + step, heads))
            hb = bias_i[hs] if bias.shape[1] > 1 else bias_i  # (h or 1, N, Nk)
            qc, kc, vc, gc = q[i, hs], k[i, hs], v[i, hs], go[i, hs]  # (h, N|Nk, d)
            scores = torch.baddbmm(
                hb.expand(qc.shape[0], n, nk), qc, kc.transpose(1, 2), alpha=scale
            )
            probs = scores.sub_(lse[i, hs, :, None]).exp_()  # (h, N, Nk)
            dv[i, hs] = torch.bmm(probs.transpose(1, 2), gc)
            dscores = torch.bmm(gc, vc.transpose(1, 2)).sub_(delta[i, hs]).mul_(probs)
            dq[i, hs] = torch.bmm(dscores, kc).mul_(scale)
            dk[i, hs] = torch.bmm(dscores.transpose(1, 2), qc).mul_(scale)
            target = dbias[i if bias.shape[0] > 1 else 0]
            if bias.shape[1] > 1:
                target[hs] += dscores
            else:
                target += dscores.sum(0, keepdim=True)
    return dq, dk, dv, dbias.to(bias.dtype)


def bias_grad_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> Tensor:
    """Apply :class:`BiasGradAttention` (see the module docstring)."""
    return BiasGradAttention.apply(q, k, v, bias)
