"""Building blocks of the causal VAE: residual blocks, strided-conv down, depth-to-space up.

Every block's ``forward(x, cache)`` returns ``(out, cache)`` where ``cache`` is a dict of its
causal convolutions' caches (``None`` at the start of a clip), so whole networks stream. The
cache passed in is consumed (its entries are popped as layers use them): pass the returned one
to the next chunk.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F

from tokenizer.network.causal_conv import CausalConv3d
from tokenizer.network.norm import FrameGroupNorm

Cache = dict | None
# One step of a network: (features, its cache or None) -> (features, its new cache or None).
Step = Callable[[torch.Tensor, Cache], tuple[torch.Tensor, object]]


def take(cache: Cache, key: str):
    """Remove and return the child cache ``key`` of ``cache`` (``None`` at the start of a clip).

    Taking (not reading) lets each layer's previous cache be freed as soon as the layer has
    used it, so a streaming step never holds the old and the new caches of the whole network
    at once (that doubled the peak memory of chunked decoding).
    """
    return None if cache is None else cache.pop(key)


def run_steps(steps: list[tuple[str, Step]], h: torch.Tensor, cache: Cache, new: dict):
    """Apply ``steps`` in order, taking each one's cache from ``cache`` and storing the new
    one in ``new`` under the same key."""
    for key, step in steps:
        h, new[key] = step(h, take(cache, key))
    return h


def run_framewise(
    make_steps: Callable[[slice], list[tuple[str, Step]]],
    h: torch.Tensor,
    cache: Cache,
    new: dict,
    frame_chunk: int | None,
) -> torch.Tensor:
    """Run steps that keep the frame rate over ``h`` (B, C, T, H, W) ``frame_chunk`` frames
    at a time (all at once for ``None``), carrying their caches from piece to piece.

    Causal convolutions with explicit caches make this exact, and it bounds the full-resolution
    activations of a streaming chunk to ``frame_chunk`` frames. ``make_steps(frames)`` builds
    the steps for the given frame range (the decoder slices its latent conditioning with it).
    """
    total = h.shape[2]
    if not frame_chunk or total <= frame_chunk:
        return run_steps(make_steps(slice(0, total)), h, cache, new)
    outs = []
    for f0 in range(0, total, frame_chunk):
        frames = slice(f0, min(f0 + frame_chunk, total))
        part: dict = {}
        outs.append(run_steps(make_steps(frames), h[:, :, frames], cache, part))
        cache = part
    new.update(cache)
    return torch.cat(outs, dim=2)


class ResBlock(nn.Module):
    """Pre-activation residual block: (GN, SiLU, causal 3x3x3 conv) x 2 plus a skip.

    Args:
        in_channels: input channels.
        out_channels: output channels (a 1x1x1 conv projects the skip when they differ).
        groups: GroupNorm groups.
        pad_mode: causal front-padding mode of the convolutions.
    """

    def __init__(
        self, *, in_channels: int, out_channels: int, groups: int = 32, pad_mode: str = "replicate"
    ) -> None:
        super().__init__()
        self.norm1 = FrameGroupNorm(channels=in_channels, groups=groups)
        self.conv1 = CausalConv3d(
            in_channels=in_channels, out_channels=out_channels, pad_mode=pad_mode
        )
        self.norm2 = FrameGroupNorm(channels=out_channels, groups=groups)
        self.conv2 = CausalConv3d(
            in_channels=out_channels, out_channels=out_channels, pad_mode=pad_mode
        )
        self.skip = (
            nn.Conv3d(in_channels, out_channels, kernel_size=1)
            if in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor, cache: Cache = None) -> tuple[torch.Tensor, dict]:
        # Without autograd the activations run in place on the fresh norm outputs, and the
        # residual is added into the conv output: fewer full-size temporaries when streaming.
        inplace = not torch.is_grad_enabled()
        h, c1 = self.conv1(F.silu(self.norm1(x), inplace=inplace), take(cache, "conv1"))
        h, c2 = self.conv2(F.silu(self.norm2(h), inplace=inplace), take(cache, "conv2"))
        out = h.add_(self.skip(x)) if inplace else self.skip(x) + h
        return out, {"conv1": c1, "conv2": c2}


def pool_shortcut(x: torch.Tensor, *, temporal: bool, first: bool) -> torch.Tensor:
    """DC-AE's non-parametric down shortcut (Chen et al. 2024, "residual autoencoding") for a
    same-width 2x downsample: space-to-channel then channel averaging, i.e. a 2x2 mean; with
    ``temporal``, also the mean of frame pairs, the clip's first frame alone (causal, as the
    strided conv: ``1 + 2t -> 1 + t`` at clip start, ``2t -> t`` for later streaming chunks).
    """
    if temporal:
        head, rest = (x[:, :, :1], x[:, :, 1:]) if first else (x[:, :, :0], x)
        if rest.shape[2] % 2:
            raise ValueError(f"a temporal shortcut needs an even frame count, got {rest.shape[2]}")
        pairs = rearrange(rest, "b c (t s) h w -> b c t s h w", s=2).mean(3)  # (B, C, T/2, H, W)
        x = torch.cat([head, pairs], dim=2)
    b = x.shape[0]
    pooled = F.avg_pool2d(rearrange(x, "b c t h w -> (b t) c h w"), 2)
    return rearrange(pooled, "(b t) c h w -> b c t h w", b=b)  # (B, C, t, H/2, W/2)


def shuffle_shortcut(x: torch.Tensor, *, out_channels: int, st: int) -> torch.Tensor:
    """DC-AE's non-parametric up shortcut (Chen et al. 2024): channel-to-space (``st`` x 2 x 2)
    then channel duplication to ``out_channels``, the same layout as ``Upsample``'s conv."""
    c = x.shape[1]
    if c % (st * 4) or out_channels % (c // (st * 4)):
        raise ValueError(
            f"residual upsample needs in_channels ({c}) divisible by {st * 4} and out_channels "
            f"({out_channels}) a multiple of in_channels / {st * 4}"
        )
    h = rearrange(x, "b (c st sh sw) t h w -> b c (t st) (h sh) (w sw)", st=st, sh=2, sw=2)
    return h.repeat_interleave(out_channels // h.shape[1], dim=1)  # (B, out, T*st, 2H, 2W)


class Downsample(nn.Module):
    """Strided causal convolution (MAGVIT-v2 replaces average pooling with it).

    Args:
        channels: input and output channels.
        temporal: whether to also halve the frame count (``1 + 2t -> 1 + t``).
        pad_mode: causal front-padding mode.
        residual: add DC-AE's average-pooling shortcut (:func:`pool_shortcut`), so the conv
            learns the residual over a pooled copy of its input (opt-in; no extra weights).
    """

    def __init__(
        self, *, channels: int, temporal: bool, pad_mode: str = "replicate", residual: bool = False
    ) -> None:
        super().__init__()
        self.temporal = temporal
        self.residual = residual
        self.conv = CausalConv3d(
            in_channels=channels,
            out_channels=channels,
            kernel_size=3,
            stride=(2 if temporal else 1, 2, 2),
            pad_mode=pad_mode,
        )

    def forward(self, x: torch.Tensor, cache: Cache = None) -> tuple[torch.Tensor, dict]:
        first = cache is None
        out, c = self.conv(x, take(cache, "conv"))
        if self.residual:
            out = out + pool_shortcut(x, temporal=self.temporal, first=first)
        return out, {"conv": c}


class Upsample(nn.Module):
    """Depth-to-space upsampling (MAGVIT-v2): a causal conv to ``s_t*2*2`` times the channels,
    then a rearrange of channels into time and space.

    After a temporal upsample the clip's first ``s_t - 1`` frames are dropped (MAGVIT-v2,
    Sec. 3.2) so ``1 + t`` frames become ``1 + s_t t``; later streaming chunks drop nothing.

    Args:
        in_channels: input channels.
        out_channels: output channels (after depth-to-space).
        temporal: whether to double the frame count as well as the spatial size.
        pad_mode: causal front-padding mode.
        residual: add DC-AE's channel-to-space shortcut (:func:`shuffle_shortcut`), so the conv
            learns the residual over a depth-to-space copy of its input (opt-in; no weights).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        temporal: bool,
        pad_mode: str = "replicate",
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.st = 2 if temporal else 1
        self.out_channels = out_channels
        self.residual = residual
        self.conv = CausalConv3d(
            in_channels=in_channels, out_channels=out_channels * self.st * 4, pad_mode=pad_mode
        )

    def forward(self, x: torch.Tensor, cache: Cache = None) -> tuple[torch.Tensor, dict]:
        h, c = self.conv(x, take(cache, "conv"))
        # (B, C*st*2*2, T, H, W) -> (B, C, T*st, 2H, 2W)
        h = rearrange(h, "b (c st sh sw) t h w -> b c (t st) (h sh) (w sw)", st=self.st, sh=2, sw=2)
        if self.residual:
            h = h + shuffle_shortcut(x, out_channels=self.out_channels, st=self.st)
        if cache is None and self.st > 1:
            h = h[:, :, self.st - 1 :]
        return h, {"conv": c}
