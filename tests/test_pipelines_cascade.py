"""The cascade (base -> SR stages -> top decode), upscale mode and the top-resolution decode,
end to end with tiny random-weight models written here."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tokenizer import CausalVAE, save_tokenizer
from walt.lightning.latents import LatentCodec


def _vae(**kw) -> CausalVAE:
    """A tiny random VAE made smaller still (8 base channels): the decode tests stay fast."""
    return CausalVAE.from_preset("tiny", base_channels=8, groups=4, **kw)


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()


def test_streamed_tiled_decode_matches_plain_decode():
    torch.manual_seed(0)
    plain = _vae(tile_above=0)
    tiles = _vae(tile_above=48, tile_size=48, tile_overlap=24)
    tiles.load_state_dict(plain.state_dict())
    z = torch.randn(1, 8, 2, 8, 12)  # (B, c, t, h, w) -> 5 x 64 x 96 pixels: 2 x 3 tiles
    with torch.no_grad():
        ref = plain.decode(z, stream=False)
        streamed_tiled, tiled = tiles.decode(z), tiles.decode(z, stream=False)
    assert streamed_tiled.shape == ref.shape == (1, 3, 5, 64, 96)
    # streaming carries every causal cache: exact, tile by tile
    torch.testing.assert_close(streamed_tiled, tiled, atol=1e-5, rtol=1e-5)
    # tiling is approximate (per-frame GroupNorm statistics and receptive fields cross tile
    # borders): close to the plain decode, far closer than a decode of other latents
    err = (streamed_tiled - ref).abs().mean() / ref.abs().mean()
    assert err < 0.15 and _corr(streamed_tiled, ref) > 0.98
    other = plain.decode(torch.randn_like(z), stream=False)
    assert (other - ref).abs().mean() / ref.abs().mean() > 5 * err


def test_codec_decode_tiles_above_the_threshold(tmp_path):
    torch.manual_seed(0)
    vae = _vae(tile_above=64, tile_size=64, tile_overlap=32)
    vae.set_latent_stats([0.0] * 8, [0.5] * 8)
    codec = LatentCodec(save_tokenizer(vae, tmp_path / "tok.safetensors"), latent_channels=8)
    plain = _vae(tile_above=0)
    plain.load_state_dict(vae.state_dict())
    z = torch.randn(1, 8, 2, 10, 10)  # 80 px > tile_above: tiled
    small = torch.randn(1, 8, 1, 8, 8)  # 64 px: one piece
    with torch.no_grad():
        assert not torch.allclose(codec.decode(z), plain.decode(vae.denormalize(z)).clamp(-1, 1),
                                  atol=1e-4)
        torch.testing.assert_close(codec.decode(z), vae.decode(vae.denormalize(z)).clamp(-1, 1))
        torch.testing.assert_close(codec.decode(small), plain.decode(vae.denormalize(small)).clamp(-1, 1),
                                   atol=1e-5, rtol=1e-5)
