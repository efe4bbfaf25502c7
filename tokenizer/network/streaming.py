"""Chunked temporal and tiled spatial encode/decode with bounded memory.

Temporal chunking carries every causal convolution's cache from one chunk to the next, so the
result equals one-shot processing to float tolerance, while activations only ever exist for one
chunk. Output is written into a pre-allocated tensor (no list + cat, which would double the
output's memory).

Spatial tiling splits large frames into overlapping tiles and blends them with linear ramps in
the overlap; it is approximate (receptive fields cross tile borders), so it is used only above
a size threshold.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Net = Callable[..., tuple[torch.Tensor, dict]]  # net(x, cache, *, frame_chunk) -> (out, cache)


def encode_chunks(
    net: Net, x: torch.Tensor, *, temporal: int, chunk: int, frame_chunk: int | None = None
) -> torch.Tensor:
    """Run encoder ``net`` over pixels (B, C, T, H, W), ``chunk`` latent frames at a time.

    The first chunk holds ``1 + temporal (chunk - 1)`` frames, later ones ``temporal * chunk``;
    ``frame_chunk`` is passed on (full-frame-rate levels run that many frames at a time).
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1 latent frame, got {chunk}")
    total = x.shape[2]
    t_lat = 1 + (total - 1) // temporal
    out: torch.Tensor | None = None
    cache, start, lat = None, 0, 0
    while start < total:
        size = 1 + temporal * (chunk - 1) if start == 0 else temporal * chunk
        piece, cache = net(x[:, :, start : start + size], cache, frame_chunk=frame_chunk)
        if out is None:
            out = piece.new_empty(*piece.shape[:2], t_lat, *piece.shape[3:])
        out[:, :, lat : lat + piece.shape[2]] = piece
        lat += piece.shape[2]
        start += size
    return out


def decode_chunks(
    net: Net, z: torch.Tensor, *, temporal: int, chunk: int, frame_chunk: int | None = None
) -> torch.Tensor:
    """Run decoder ``net`` over latents (B, c, t, h, w), ``chunk`` latent frames at a time
    (``frame_chunk`` as in :func:`encode_chunks`)."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1 latent frame, got {chunk}")
    t_lat = z.shape[2]
    frames = 1 + temporal * (t_lat - 1)
    out: torch.Tensor | None = None
    cache, pos = None, 0
    for start in range(0, t_lat, chunk):
        piece, cache = net(z[:, :, start : start + chunk], cache, frame_chunk=frame_chunk)
        if out is None:
            out = piece.new_empty(*piece.shape[:2], frames, *piece.shape[3:])
        out[:, :, pos : pos + piece.shape[2]] = piece
        pos += piece.shape[2]
    return out


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of length ``tile`` covering ``size`` with >= ``overlap`` overlap."""
    if tile >= size:
        return [0]
    if overlap >= tile:
        raise ValueError(f"tile overlap {overlap} must be smaller than the tile {tile}")
    step = tile - overlap
    starts = list(range(0, size - tile, step))
    return starts + [size - tile]


def ramp(length: int, overlap: int, *, left: bool, right: bool) -> torch.Tensor:
    """1D blending weights: linear ramps over ``overlap`` at tile sides that touch a neighbour."""
    w = torch.ones(length)
    if overlap > 0:
        r = (torch.arange(overlap, dtype=torch.float32) + 0.5) / overlap
        if left:
            w[:overlap] = torch.minimum(w[:overlap], r)
        if right:
            w[length - overlap :] = torch.minimum(w[length - overlap :], r.flip(0))
    return w


def tiled(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    tile: int,
    overlap: int,
    scale: float,
) -> torch.Tensor:
    """Apply ``fn`` to overlapping spatial tiles of ``x`` (B, C, T, H, W) and blend the results.

    ``tile`` and ``overlap`` are in input pixels; ``scale`` is output size / input size
    (8 for decoding latents, 1/8 for encoding pixels).
    """
    height, width = x.shape[3], x.shape[4]
    ys, xs = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    out = weight = None
    o_ov = int(round(overlap * scale))
    for y in ys:
        for x0 in xs:
            piece = fn(x[:, :, :, y : y + tile, x0 : x0 + tile])
            if out is None:
                shape = (*piece.shape[:3], int(round(height * scale)), int(round(width * scale)))
                out = piece.new_zeros(shape)
                weight = piece.new_zeros(shape[3:])
            ph, pw = piece.shape[3], piece.shape[4]
            oy, ox = int(round(y * scale)), int(round(x0 * scale))
            wy = ramp(ph, o_ov, left=y > 0, right=y + tile < height)
            wx = ramp(pw, o_ov, left=x0 > 0, right=x0 + tile < width)
            w2 = (wy[:, None] * wx[None, :]).to(piece)  # (h, w)
            out[:, :, :, oy : oy + ph, ox : ox + pw] += piece * w2
            weight[oy : oy + ph, ox : ox + pw] += w2
    return out / weight
