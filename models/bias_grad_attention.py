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

Peak extra memory is one chunk of scores, not the whole batch of them. A chunk is a block of
``(batch, head)`` rows that is a plain view of every operand and of the bias (whole heads of some
samples, or a run of heads of one sample), so the bias is read and its gradient accumulated
in place, reduced over the dims the bias broadcasts; no rows are gathered or scattered. The
softmax scale is folded into the small ``q`` / ``k`` operands and ``- lse`` / ``- delta`` into
the matmuls' inputs, and ``dq, dk, dv`` are written by the matmuls themselves (``out=``).
Results equal the math path to float tolerance (``tests/test_models_attention.py``).
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


def _chunks(b: int, heads: int, rows: int):
    """``(batch slice, head slice)`` blocks of about ``rows`` (batch, head) rows each: whole heads
    of several samples, or a run of heads of one sample, so every block is a plain view."""
    if rows >= heads:
        per = rows // heads
        for b0 in range(0, b, per):
            yield slice(b0, min(b0 + per, b)), slice(0, heads)
        return
    for b0 in range(b):
        for h0 in range(0, heads, rows):
            yield slice(b0, b0 + 1), slice(h0, min(h0 + rows, heads))


def _chunked_backward(
    go: Tensor, q: Tensor, k: Tensor, v: Tensor, bias: Tensor, out: Tensor, lse: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    b, heads, n, d = q.shape
    nk = k.shape[-2]
    scale = d**-0.5
    bb, hb = bias.shape[0], bias.shape[1]
    q, k, v, go = (x.contiguous() for x in (q, k, v, go))  # (B, heads, N|Nk, d)
    qs, ks = q * scale, k * scale  # the softmax scale folded into the small operands
    delta = (go.float() * out.float()).sum(-1, keepdim=True).to(q.dtype)  # (B, heads, N, 1)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    dbias = torch.zeros((bb, hb, n, nk), dtype=torch.float32, device=bias.device)
    for bs, hs in _chunks(b, heads, max(1, CHUNK_ELEMENTS // (n * nk))):
        rows = (bs.stop - bs.start) * (hs.stop - hs.start)
        # The bias rows of this block: a view, broadcast over the dims the bias does not have.
        bias_b, bias_h = (bs if bb > 1 else slice(None)), (hs if hb > 1 else slice(None))
        qc, ksc, qsc, vc, gc = (x[bs, hs].reshape(rows, -1, d) for x in (q, ks, qs, v, go))
        # P = exp(q k^T * scale + bias - lse): bias - lse is one pass that also allocates.
        # In q's dtype: under bf16 autocast the bias and lse are float32 and q, k are bf16.
        probs = (bias[bias_b, bias_h] - lse[bs, hs, :, None]).reshape(rows, n, nk).to(q.dtype)
        probs.baddbmm_(qsc, k[bs, hs].reshape(rows, nk, d).transpose(1, 2)).exp_()
        torch.bmm(probs.transpose(1, 2), gc, out=dv[bs, hs].view(rows, nk, d))
        # dS = P * (dO v^T - delta), the subtraction folded into the matmul's input.
        dscores = torch.baddbmm(-delta[bs, hs].reshape(rows, n, 1), gc, vc.transpose(1, 2))
        dscores.mul_(probs)  # (rows, N, Nk)
        torch.bmm(dscores, ksc, out=dq[bs, hs].view(rows, n, d))
        torch.bmm(dscores.transpose(1, 2), qsc, out=dk[bs, hs].view(rows, nk, d))
        block = dscores.view(bs.stop - bs.start, hs.stop - hs.start, n, nk)
        if bb == 1 and block.shape[0] > 1:
            block = block.sum(0, keepdim=True)
        if hb == 1 and block.shape[1] > 1:
            block = block.sum(1, keepdim=True)
        dbias[bias_b, bias_h] += block
    return dq, dk, dv, dbias.to(bias.dtype)


def bias_grad_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> Tensor:
    """Apply :class:`BiasGradAttention` (see the module docstring)."""
    return BiasGradAttention.apply(q, k, v, bias)
