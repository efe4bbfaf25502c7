"""Loading feature networks from TorchScript files and their call conventions."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from torch import nn

from tests.evaluate_fixtures import FakeI3D, FakeInception, PairInception, save_script
from walt.evaluate.features import (
    I3DFeatures,
    InceptionFeatures,
    extract_features,
    file_sha256,
    load_torchscript,
)


def test_load_reports_sha256_and_names_the_argument_on_bad_files(tmp_path):
    path = save_script(FakeI3D(), tmp_path / "i3d.pt")
    net, sha = load_torchscript(path, device="cpu", name="i3d")
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest() == file_sha256(path)
    assert not net.training
    with pytest.raises(FileNotFoundError, match="i3d: network file not found"):
        load_torchscript(tmp_path / "missing.pt", device="cpu", name="i3d")
    # A pickled state dict is not TorchScript: refused, never unpickled.
    torch.save({"w": torch.zeros(2)}, tmp_path / "state.pt")
    with pytest.raises(ValueError, match="inception: .* is not a TorchScript archive"):
        load_torchscript(tmp_path / "state.pt", device="cpu", name="inception")


def test_i3d_is_called_with_the_stylegan_v_protocol(tmp_path):
    net, _ = load_torchscript(save_script(FakeI3D(), tmp_path / "i3d.pt"), device="cpu", name="i3d")
    i3d = I3DFeatures(net=net, device="cpu")
    videos = torch.randint(0, 256, (3, 3, 16, 20, 24), dtype=torch.uint8)  # (B, C, T, H, W)
    feats = i3d(videos)
    assert feats.shape == (3, 8) and feats.dtype == torch.float64
    # Same as calling the network the way StyleGAN-V's fvd2048_16f does.
    direct = net(videos, rescale=True, resize=True, return_features=True)
    torch.testing.assert_close(feats, direct.double())
    with pytest.raises(ValueError, match="videos must be uint8"):
        i3d(videos.float())


def test_networks_with_another_convention_are_rejected(tmp_path):
    net, _ = load_torchscript(
        save_script(PairInception(), tmp_path / "p.pt"), device="cpu", name="i3d"
    )
    with pytest.raises(ValueError, match=r"i3d: .*\['rescale', 'resize', 'return_features'\]"):
        I3DFeatures(net=net, device="cpu")

    class Wrong(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.float().mean(dim=(2, 3))

    net, _ = load_torchscript(
        save_script(Wrong(), tmp_path / "w.pt"), device="cpu", name="inception"
    )
    images = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"must return \(features, logits\)"):
        InceptionFeatures(net=net, device="cpu").features(images)


def test_inception_stylegan_convention_features_and_log_probabilities(tmp_path):
    module = FakeInception()
    net, _ = load_torchscript(
        save_script(module, tmp_path / "inc.pt"), device="cpu", name="inception"
    )
    inception = InceptionFeatures(net=net, device="cpu")
    images = torch.randint(0, 256, (4, 3, 12, 10), dtype=torch.uint8)
    assert inception.stylegan
    torch.testing.assert_close(
        inception.features(images), module(images, return_features=True).double()
    )
    # IS uses the probabilities without the output bias (StyleGAN2-ADA's no_output_bias=True).
    probs = module(images, no_output_bias=True).double()
    torch.testing.assert_close(inception.logits(images).softmax(dim=1), probs)
    assert not torch.allclose(probs, module(images).double())


def test_inception_pair_convention(tmp_path):
    module = PairInception()
    net, _ = load_torchscript(
        save_script(module, tmp_path / "pair.pt"), device="cpu", name="inception"
    )
    inception = InceptionFeatures(net=net, device="cpu")
    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    feats, logits = module(images)
    assert not inception.stylegan
    torch.testing.assert_close(inception.features(images), feats.double())
    torch.testing.assert_close(inception.logits(images), logits.double())


def test_extract_features_batches_equal_shapes_in_order():
    calls = []

    def network(x: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(x.shape))
        return x.double().mean(dim=(1, 2, 3))[:, None]

    arrays = [(f"k{i}", np.full((4, 4, 3), i, np.uint8)) for i in range(5)]
    arrays.insert(2, ("odd", np.full((6, 4, 3), 9, np.uint8)))
    keys, rows = extract_features(arrays, network, batch_size=2, pattern="b h w c -> b c h w")
    assert keys == ["k0", "k1", "odd", "k2", "k3", "k4"]
    assert rows[:, 0].tolist() == [0, 1, 9, 2, 3, 4]
    assert calls == [(2, 3, 4, 4), (1, 3, 6, 4), (2, 3, 4, 4), (1, 3, 4, 4)]
