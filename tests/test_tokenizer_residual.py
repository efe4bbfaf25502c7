"""DC-AE residual autoencoding (``CausalVAE(residual=True)``): opt-in, no weights, exact
shortcuts, and the streaming / causality guarantees of the default network."""

import pytest
import torch

from tokenizer import CausalVAE
from tokenizer.network.blocks import Downsample, Upsample, pool_shortcut


def tiny(**overrides) -> CausalVAE:
    torch.manual_seed(0)
    return CausalVAE.from_preset("tiny", **overrides).eval()


def test_default_is_unchanged_and_residual_adds_no_weights():
    plain, residual = tiny(), tiny(residual=True)
    assert "residual" not in plain.config and residual.config["residual"] is True
    assert plain.state_dict().keys() == residual.state_dict().keys()
    for key, value in plain.state_dict().items():
        torch.testing.assert_close(residual.state_dict()[key], value)
    x = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    with torch.no_grad():
        assert not torch.allclose(plain.encode(x), residual.encode(x))
    assert CausalVAE.from_config(residual.config).config["residual"] is True


def test_down_shortcut_is_causal_pooling():
    down = Downsample(channels=2, temporal=True, residual=True)
    for p in down.parameters():
        torch.nn.init.zeros_(p)
    x = torch.rand(1, 2, 5, 4, 4)
    out, _ = down(x)  # (1, 2, 3, 2, 2)
    first = x[:, :, :1].reshape(1, 2, 1, 2, 2, 2, 2).mean((4, 6))
    torch.testing.assert_close(out[:, :, :1], first)
    pair = x[:, :, 1:3].mean(2, keepdim=True).reshape(1, 2, 1, 2, 2, 2, 2).mean((4, 6))
    torch.testing.assert_close(out[:, :, 1:2], pair)
    with pytest.raises(ValueError, match="even frame count"):
        pool_shortcut(x[:, :, :2], temporal=True, first=True)


def test_up_shortcut_is_depth_to_space_with_duplication():
    up = Upsample(in_channels=8, out_channels=4, temporal=False, residual=True)
    for p in up.parameters():
        torch.nn.init.zeros_(p)
    x = torch.rand(1, 8, 2, 3, 3)
    out, _ = up(x)  # (1, 4, 2, 6, 6): 8 channels -> 2 at 2x2, each copied twice
    assert out.shape == (1, 4, 2, 6, 6)
    torch.testing.assert_close(out[:, 0], out[:, 1])
    torch.testing.assert_close(out[:, 0, :, 0::2, 0::2], x[:, 0])
    torch.testing.assert_close(out[:, 2, :, 1::2, 1::2], x[:, 7])
    with pytest.raises(ValueError, match="residual upsample"):
        Upsample(in_channels=6, out_channels=4, temporal=False, residual=True)(x[:, :6])


@pytest.mark.parametrize(("chunk", "frames"), [(1, 1), (2, 0)])
def test_residual_streaming_equals_one_shot(chunk, frames):
    vae = tiny(residual=True, stream_chunk=chunk, stream_frames=frames)
    x = torch.rand(1, 3, 13, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        z = vae.encode(x, stream=False)
        torch.testing.assert_close(vae.encode(x, stream=True), z, atol=1e-5, rtol=1e-5)
        y = vae.decode(z, stream=False)
        torch.testing.assert_close(vae.decode(z, stream=True), y, atol=1e-5, rtol=1e-5)
        # causal: a prefix of the clip encodes to the prefix of the latent
        torch.testing.assert_close(
            vae.encode(x[:, :, :5], stream=False), z[:, :, :2], atol=1e-5, rtol=1e-5
        )


def test_residual_image_is_the_first_latent_frame():
    vae = tiny(residual=True)
    x = torch.rand(1, 3, 9, 16, 16) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(
            vae.encode(x[:, :, :1]), vae.encode(x)[:, :, :1], atol=1e-5, rtol=1e-5
        )


def test_residual_needs_divisible_widths():
    with pytest.raises(ValueError, match="latent_channels"):
        CausalVAE.from_preset("tiny", residual=True, latent_channels=12)


def test_small_cpu_recipe_builds_a_residual_model():
    from pathlib import Path

    import yaml

    path = Path(__file__).resolve().parents[1] / "configs/tokenizer/small_cpu.yaml"
    args = yaml.safe_load(path.read_text())["model"]["init_args"]
    vae = CausalVAE.from_preset(args["preset"], **args["vae_overrides"])
    assert vae.config["residual"] is True and vae.spatial_compression == 8
