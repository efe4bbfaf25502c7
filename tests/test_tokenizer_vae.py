"""CausalVAE: shapes, causality, streaming, tiling, errors, gradients, presets."""

from __future__ import annotations

import pytest
import torch

from tokenizer import PRESETS, CausalVAE
from tokenizer.network.causal_conv import CausalConv3d


def tiny(**overrides) -> CausalVAE:
    torch.manual_seed(0)
    return CausalVAE.from_preset("tiny", **overrides).eval()


def clip(frames: int, size: int = 16, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, frames, size, size, generator=g) * 2 - 1


@pytest.mark.parametrize(("stride", "chunks"), [(1, [1, 3, 2]), (2, [1, 2, 4]), (2, [3, 2, 2])])
def test_causal_conv_cache_streams_exactly(stride, chunks):
    torch.manual_seed(0)
    conv = CausalConv3d(in_channels=2, out_channels=3, kernel_size=3, stride=(stride, 1, 1))
    x = torch.randn(1, 2, sum(chunks), 4, 4)
    full, _ = conv(x)
    pieces, cache, start = [], None, 0
    for n in chunks:
        out, cache = conv(x[:, :, start : start + n], cache)
        pieces.append(out)
        start += n
    torch.testing.assert_close(torch.cat(pieces, dim=2), full)


def test_causal_conv_does_not_see_future():
    torch.manual_seed(0)
    conv = CausalConv3d(in_channels=1, out_channels=1)
    x = torch.randn(1, 1, 6, 4, 4)
    y = x.clone()
    y[:, :, 4:] += 5.0
    torch.testing.assert_close(conv(x)[0][:, :, :4], conv(y)[0][:, :, :4])


@pytest.mark.parametrize("frames", [1, 5, 17])
def test_shapes(frames):
    vae = tiny()
    with torch.no_grad():
        z = vae.encode(clip(frames))
        assert z.shape == (1, 8, 1 + (frames - 1) // 4, 2, 2)
        assert vae.decode(z).shape == (1, 3, frames, 16, 16)


@pytest.mark.parametrize("j", [0, 1, 2])
def test_encoding_is_causal(j):
    vae = tiny()
    x = clip(13)
    with torch.no_grad():
        full = vae.encode(x)
        prefix = vae.encode(x[:, :, : 1 + 4 * j])
    torch.testing.assert_close(prefix, full[:, :, : 1 + j], atol=1e-5, rtol=1e-5)


def test_image_latent_is_first_video_latent():
    vae = tiny()
    image = clip(1, seed=3)
    with torch.no_grad():
        z_image = vae.encode(image)
        for seed in (4, 5):
            video = torch.cat([image, clip(8, seed=seed)], dim=2)
            torch.testing.assert_close(vae.encode(video)[:, :, :1], z_image, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("j", [0, 1, 3])
def test_decoding_is_causal(j):
    vae = tiny()
    torch.manual_seed(2)
    z = torch.randn(1, 8, 5, 2, 2)
    with torch.no_grad():
        full = vae.decode(z)
        prefix = vae.decode(z[:, :, : 1 + j])
    torch.testing.assert_close(prefix, full[:, :, : 1 + 4 * j], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("chunk", "frames"), [(1, 1), (2, 1), (3, 1), (2, 3), (1, 0)])
def test_streaming_equals_one_shot(chunk, frames):
    vae = tiny(stream_chunk=chunk, stream_frames=frames)
    x = clip(21)
    with torch.no_grad():
        z = vae.encode(x, stream=False)
        torch.testing.assert_close(vae.encode(x, stream=True), z, atol=1e-5, rtol=1e-5)
        y = vae.decode(z, stream=False)
        torch.testing.assert_close(vae.decode(z, stream=True), y, atol=1e-5, rtol=1e-5)


def test_streaming_is_default_above_threshold():
    vae = tiny(stream_above=2, stream_chunk=1)
    x = clip(13)
    with torch.no_grad():
        torch.testing.assert_close(vae.encode(x), vae.encode(x, stream=False), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("size", "tile", "overlap"), [(40, 16, 8), (64, 32, 16), (24, 24, 8)])
def test_tile_blending_is_exact_for_local_maps(size, tile, overlap):
    from tokenizer.network.streaming import tiled

    x = torch.randn(1, 2, 3, size, size)

    def up(v: torch.Tensor) -> torch.Tensor:  # pointwise map with 2x nearest upsampling
        return (3 * v + 1).repeat_interleave(2, dim=3).repeat_interleave(2, dim=4)

    torch.testing.assert_close(tiled(up, x, tile=tile, overlap=overlap, scale=2), up(x))


def test_vae_tiling_within_tolerance():
    whole = tiny(tile_above=0)
    tiles = tiny(tile_above=32, tile_size=32, tile_overlap=16)
    tiles.load_state_dict(whole.state_dict())
    x = clip(5, size=64)
    with torch.no_grad():
        z = whole.encode(x)
        y, y_tiled = whole.decode(z), tiles.decode(z)
        z_tiled = tiles.encode(x)
        # a tile covering the whole frame is exact
        assert torch.equal(tiny(tile_above=32, tile_size=64, tile_overlap=16).encode(x), z)
    # Per-frame GroupNorm statistics differ per tile and random weights have a large receptive
    # field, so tiling is approximate: check it stays strongly correlated with one-shot.
    for a, b in ((z, z_tiled), (y, y_tiled)):
        assert torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1] > 0.6


@pytest.mark.parametrize("frames", [2, 4, 8])
def test_bad_frame_count_raises(frames):
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        tiny().encode(clip(frames))


@pytest.mark.parametrize("size", [12, 20])
def test_bad_size_raises(size):
    with pytest.raises(ValueError, match="divisible by 8"):
        tiny().encode(clip(1, size=size))


def test_pad_and_crop_round_trip():
    vae = tiny()
    x = torch.rand(1, 3, 7, 13, 19) * 2 - 1
    with torch.no_grad():
        z = vae.encode(x, pad=True)
        assert z.shape == (1, 8, 3, 2, 3)  # padded to 9 x 16 x 24
        assert vae.decode(z, crop_to=x.shape[2:]).shape == x.shape


def test_every_parameter_gets_a_gradient():
    vae = tiny().train()
    x = clip(5)
    recon, post = vae(x, generator=torch.Generator().manual_seed(0))
    ((recon - x).abs().mean() + post.kl().mean()).backward()
    missing = [n for n, p in vae.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing


def test_bad_latent_shape_raises():
    with pytest.raises(ValueError, match="expected latents"):
        tiny().decode(torch.zeros(1, 4, 2, 2, 2))


def test_presets_and_config():
    assert sum(p.numel() for p in tiny().parameters()) < 1_000_000
    assert PRESETS["walt"]["base_channels"] == 128 and PRESETS["walt"]["num_res_blocks"] == 4
    assert PRESETS["walt"]["channel_mults"] == [1, 2, 2, 4]
    assert PRESETS["walt-image"]["channel_mults"] == [1, 1, 2, 4]
    with torch.device("meta"):
        walt = CausalVAE.from_preset("walt")
    assert (walt.latent_channels, walt.temporal_compression, walt.spatial_compression) == (8, 4, 8)
    vae = tiny(latent_channels=4)
    assert vae.config["latent_mean"] == [0.0] * 4 and vae.config["latent_std"] == [1.0] * 4
    rebuilt = CausalVAE.from_config(vae.config)
    assert rebuilt.config == vae.config
    with pytest.raises(KeyError, match="unknown tokenizer preset"):
        CausalVAE.from_preset("nope")


def test_normalize_uses_stored_stats():
    vae = tiny(latent_channels=2, latent_mean=[1.0, -2.0], latent_std=[2.0, 0.5])
    z = torch.randn(1, 2, 1, 2, 2)
    n = vae.normalize(z)
    torch.testing.assert_close(n[:, 0], (z[:, 0] - 1.0) / 2.0)
    torch.testing.assert_close(n[:, 1], (z[:, 1] + 2.0) / 0.5)
    torch.testing.assert_close(vae.denormalize(n), z)
    with pytest.raises(ValueError, match="positive"):
        vae.set_latent_stats([0.0, 0.0], [1.0, 0.0])


def test_inference_path_equals_autograd_path():
    """Without autograd the norms and activations run in place; the result must not change."""
    vae = tiny()
    x = clip(9)
    with torch.no_grad():
        z_inf = vae.encode(x, stream=False)
        y_inf = vae.decode(z_inf, stream=False)
    z_grad = vae.encode(x, stream=False)
    y_grad = vae.decode(z_grad, stream=False)
    assert z_grad.requires_grad and y_grad.requires_grad
    torch.testing.assert_close(z_inf, z_grad.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y_inf, y_grad.detach(), atol=1e-5, rtol=1e-5)


def test_stream_cache_holds_only_the_frames_it_needs():
    """A chunk's cache must not keep the whole padded chunk alive (a slice view would)."""
    conv = CausalConv3d(in_channels=2, out_channels=2, kernel_size=3)
    _, cache = conv(torch.randn(1, 2, 8, 4, 4))
    assert cache.shape[2] == 2
    assert cache.untyped_storage().nbytes() == cache.numel() * cache.element_size()


def test_large_weight_conv_in_groups_equals_one_call(monkeypatch):
    import tokenizer.network.causal_conv as cc

    conv = CausalConv3d(in_channels=4, out_channels=10, kernel_size=3)
    x = torch.randn(1, 4, 5, 6, 6)
    with torch.no_grad():
        whole, _ = conv(x)
        monkeypatch.setattr(cc, "SPLIT_WEIGHT_BYTES", conv.conv.weight.numel())  # -> 4 groups
        grouped, _ = conv(x)
    torch.testing.assert_close(grouped, whole, atol=1e-6, rtol=1e-6)


def test_inference_stream_reuses_the_handed_over_cache_buffer():
    conv = CausalConv3d(in_channels=2, out_channels=2, kernel_size=3)
    x = torch.randn(1, 2, 9, 4, 4)
    with torch.no_grad():
        whole, _ = conv(x)
        first, cache = conv(x[:, :, :5])
        buffer = cache.data_ptr()
        second, cache = conv(x[:, :, 5:], cache)
    assert cache.data_ptr() == buffer
    torch.testing.assert_close(torch.cat([first, second], dim=2), whole)


@pytest.mark.parametrize("kernel,stride", [(3, 1), (3, (2, 2, 2)), ((1, 3, 3), 1), ((3, 1, 1), 1)])
@pytest.mark.parametrize("split", [False, True])
def test_time_folded_conv_equals_3d_reference(kernel, stride, split, monkeypatch):
    import tokenizer.network.causal_conv as cc

    torch.manual_seed(0)
    conv = CausalConv3d(in_channels=3, out_channels=5, kernel_size=kernel, stride=stride)
    window = torch.randn(2, 3, conv.kernel_size[0], 16, 16)  # one output frame, 16x16 pixels
    assert conv.folds_time(window)
    assert not conv.folds_time(window[:, :, :, :8, :8])  # tiny frames keep the 3D kernel
    if split:
        monkeypatch.setattr(cc, "SPLIT_WEIGHT_BYTES", conv.conv.weight.numel())  # -> groups
    with torch.no_grad():
        folded, reference = conv._conv(window), conv._conv(window, fold=False)
    assert folded.shape == reference.shape and folded.shape[2] == 1
    torch.testing.assert_close(folded, reference, atol=1e-5, rtol=1e-5)
    # The gradients of the folded path are those of the reference path.
    grads = []
    for fold in (True, False):
        conv.zero_grad()
        conv._conv(window, fold=fold).square().sum().backward()
        grads.append(conv.conv.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], atol=1e-4, rtol=1e-4)
