import torch

from tokenizer.baselines import trivial_codec


def test_shape_and_constant_clip():
    x = torch.full((2, 3, 9, 16, 16), 0.3)
    y = trivial_codec(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y, x)


def test_first_frame_is_causal():
    x = torch.rand(1, 3, 9, 16, 16) * 2 - 1
    x2 = x.clone()
    x2[:, :, 1:] = -x2[:, :, 1:]
    torch.testing.assert_close(trivial_codec(x)[:, :, 0], trivial_codec(x2)[:, :, 0])
    assert not torch.allclose(trivial_codec(x)[:, :, 1:], trivial_codec(x2)[:, :, 1:])
