"""Causal 3D convolution with an explicit, returned temporal cache.

MAGVIT-v2 (Yu et al. 2023, Sec. 3.2) makes every 3D convolution causal in time: the input is
padded with ``k_t - 1`` frames in front and none after, so output frame ``i`` only sees input
frames ``<= i``. With a temporal stride ``s`` this maps ``1 + s*t`` frames to ``1 + t`` frames.

Streaming: ``forward(x, cache)`` returns ``(out, cache)``. ``cache=None`` means "start of the
clip" (the front padding is built from the first frame); otherwise ``cache`` holds the
not-yet-consumed tail of the previous chunk's padded input, so processing a clip in chunks
gives the same frames as processing it at once. Nothing is stored on the module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PAD_MODES = ("replicate", "zeros")
# Without autograd, convolutions whose weight is larger than this run in output-channel groups:
# the CPU kernel re-lays out the whole weight per call, a transient as large as the weight
# (108 MiB for the `walt` preset's first depth-to-space conv) that sets streaming's peak memory.
SPLIT_WEIGHT_BYTES = 32 * 2**20
# Streaming runs the full-frame-rate levels one output frame at a time: a (B, C, k_t, H, W)
# window, for which PyTorch's CPU dispatch picks its native 3D kernel over oneDNN (its
# size heuristic counts B*C*T*H; with T = k_t it stays small) and runs at 0.05-0.45 of the
# conv3d peak. One output frame *is* a 2D convolution over k_t*C channels, which oneDNN runs
# at the peak from 16x16 frames up; below that the native kernel is as fast or faster
# (measured, benchmarks/RESULTS.md, "Tokenizer encode / decode").
FOLD_MIN_PIXELS = 16 * 16


class CausalConv3d(nn.Module):
    """A 3D convolution that is causal in time and keeps spatial size (or strides it).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: ``(k_t, k_h, k_w)`` or one int for all three.
        stride: ``(s_t, s_h, s_w)`` or one int.
        pad_mode: how the ``k_t - 1`` front frames are filled at the start of a clip:
            ``"replicate"`` (copies of the first frame) or ``"zeros"``.
        bias: whether the convolution has a bias.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int] = 3,
        stride: int | tuple[int, int, int] = 1,
        pad_mode: str = "replicate",
        bias: bool = True,
    ) -> None:
        super().__init__()
        k = (kernel_size,) * 3 if isinstance(kernel_size, int) else tuple(kernel_size)
        s = (stride,) * 3 if isinstance(stride, int) else tuple(stride)
        if pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
        if any(kk % 2 == 0 for kk in k[1:]):
            raise ValueError(f"spatial kernel sizes must be odd, got {k}")
        self.kernel_size = k
        self.stride = s
        self.pad_mode = pad_mode
        # Spatial padding is symmetric ("same" for stride 1, exact halving for stride 2 on even
        # sizes); temporal padding is done by hand in forward (front only).
        self.conv = nn.Conv3d(
            in_channels,
            out_channels,
            kernel_size=k,
            stride=s,
            padding=(0, k[1] // 2, k[2] // 2),
            bias=bias,
        )

    def _front_pad(self, x: torch.Tensor) -> torch.Tensor:
        n = self.kernel_size[0] - 1
        first = x[:, :, :1]  # (B, C, 1, H, W)
        if self.pad_mode == "zeros":
            first = torch.zeros_like(first)
        return first.expand(-1, -1, n, -1, -1)

    def forward(
        self, x: torch.Tensor, cache: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Convolve ``x`` (B, C, T, H, W), continuing from ``cache``; return ``(out, cache)``."""
        if x.ndim != 5:
            raise ValueError(f"CausalConv3d expects (B, C, T, H, W), got shape {tuple(x.shape)}")
        front = self._front_pad(x) if cache is None else cache
        padded = torch.cat([front, x], dim=2)  # (B, C, n_front + T, H, W)
        k_t, s_t = self.kernel_size[0], self.stride[0]
        length = padded.shape[2]
        n_out = (length - k_t) // s_t + 1 if length >= k_t else 0
        if n_out > 0:
            out = self._conv(padded[:, :, : (n_out - 1) * s_t + k_t])
        else:
            out = self._empty_out(x)
        # Keep every frame a future output window still needs (the tail from the next window's
        # start); for stride 1 this is the last k_t - 1 frames. Copied: a slice would keep the
        # whole padded chunk alive between chunks (3x the cache memory for 4-frame chunks).
        tail = padded[:, :, n_out * s_t :]
        if cache is not None and cache.shape == tail.shape and not torch.is_grad_enabled():
            # The caller handed its cache over (``blocks.take``): reuse its buffer instead of
            # allocating a new one per chunk, which fragments the heap (RSS) when streaming.
            return out, cache.copy_(tail)
        return out, tail.clone()

    def folds_time(self, x: torch.Tensor) -> bool:
        """Whether ``_conv`` runs window ``x`` as a 2D convolution (see ``FOLD_MIN_PIXELS``):
        one output frame, on the CPU, frames of at least ``FOLD_MIN_PIXELS`` pixels."""
        return (
            x.device.type == "cpu"
            and x.shape[2] == self.kernel_size[0]
            and x.shape[3] * x.shape[4] >= FOLD_MIN_PIXELS
        )

    def _conv(self, x: torch.Tensor, *, fold: bool | None = None) -> torch.Tensor:
        """The convolution of an already padded window; ``fold`` overrides :meth:`folds_time`
        (``False`` is the reference 3D path)."""
        weight, bias = self.conv.weight, self.conv.bias
        conv, stride, padding = F.conv3d, self.conv.stride, self.conv.padding
        fold = self.folds_time(x) if fold is None else fold
        if fold:  # (B, C, k_t, H, W) -> (B, C*k_t, H, W), weight (O, C*k_t, k_h, k_w): same sums
            x, weight = x.flatten(1, 2), weight.flatten(1, 2)
            conv, stride, padding = F.conv2d, stride[1:], padding[1:]
        size = weight.numel() * weight.element_size()
        if torch.is_grad_enabled() or size <= SPLIT_WEIGHT_BYTES:
            out = conv(x, weight, bias, stride=stride, padding=padding)
        else:
            groups = -(-size // SPLIT_WEIGHT_BYTES)
            step = -(-weight.shape[0] // groups)
            parts = [
                conv(x, weight[o : o + step], None if bias is None else bias[o : o + step],
                     stride=stride, padding=padding)
                for o in range(0, weight.shape[0], step)
            ]
            out = torch.cat(parts, dim=1)
        return out.unsqueeze(2) if fold else out  # (B, O, T_out, H', W')

    def _empty_out(self, x: torch.Tensor) -> torch.Tensor:
        b, _, _, h, w = x.shape
        sh, sw = self.stride[1], self.stride[2]
        kh, kw = self.kernel_size[1], self.kernel_size[2]
        ho = (h + 2 * (kh // 2) - kh) // sh + 1
        wo = (w + 2 * (kw // 2) - kw) // sw + 1
        return x.new_zeros(b, self.conv.out_channels, 0, ho, wo)
