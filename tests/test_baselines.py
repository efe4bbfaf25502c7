"""The trivial codec (tokenizer.baselines): exact on what its grid can hold, causal, padded."""

import pytest
import torch
from einops import repeat

from tokenizer.baselines import trivial_codec, trivial_decode, trivial_encode


def block_clip(
    k: int = 2, h: int = 3, w: int = 2, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """A clip constant over each 8x8 block and 4-frame group (first frame alone), and its grid."""
    grid = torch.rand(2, 3, 1 + k, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    space = repeat(grid, "b c t h w -> b c t (h sh) (w sw)", sh=8, sw=8)
    clip = torch.cat([space[:, :, :1], space[:, :, 1:].repeat_interleave(4, dim=2)], dim=2)
    return clip, grid


def test_block_constant_clip_encodes_to_its_blocks_exactly():
    clip, grid = block_clip()
    assert clip.shape == (2, 3, 9, 24, 16)
    torch.testing.assert_close(trivial_encode(clip), grid, atol=1e-6, rtol=0)


def test_clip_constant_per_group_reconstructs_exactly():
    # spatially constant within each frame group: bicubic up of a flat grid is flat
    clip, _ = block_clip(h=1, w=1)
    clip = repeat(clip[..., :1, :1], "b c t 1 1 -> b c t h w", h=16, w=24)
    y = trivial_codec(clip)
    assert y.shape == clip.shape
    torch.testing.assert_close(y, clip, atol=1e-6, rtol=0)


def test_encode_matches_block_means_by_loops():
    x = torch.rand(1, 3, 9, 16, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    grid = trivial_encode(x)
    groups = [slice(0, 1), slice(1, 5), slice(5, 9)]
    for t, frames in enumerate(groups):
        for i in range(2):
            want = x[0, :, frames, 8 * i : 8 * i + 8, :].mean(dim=(1, 2, 3))
            torch.testing.assert_close(grid[0, :, t, i, 0], want)


def test_decode_of_a_flat_grid_is_flat_and_repeats_groups():
    grid = torch.tensor([0.1, -0.5, 0.7]).view(1, 1, 3, 1, 1).expand(1, 3, 3, 2, 2)
    y = trivial_decode(grid)  # (1, 3, 9, 16, 16)
    assert y.shape == (1, 3, 9, 16, 16)
    for frames, value in ((slice(0, 1), 0.1), (slice(1, 5), -0.5), (slice(5, 9), 0.7)):
        torch.testing.assert_close(y[:, :, frames], torch.full_like(y[:, :, frames], value))


def test_first_frame_is_causal():
    x = torch.rand(1, 3, 9, 16, 16) * 2 - 1
    x2 = x.clone()
    x2[:, :, 1:] = -x2[:, :, 1:]
    torch.testing.assert_close(trivial_codec(x)[:, :, 0], trivial_codec(x2)[:, :, 0])
    assert not torch.allclose(trivial_codec(x)[:, :, 1:], trivial_codec(x2)[:, :, 1:])


def test_group_uses_only_its_own_frames():
    x = torch.rand(1, 3, 9, 16, 16) * 2 - 1
    x2 = x.clone()
    x2[:, :, 5:] = 0.0  # change only the second group
    torch.testing.assert_close(trivial_codec(x)[:, :, :5], trivial_codec(x2)[:, :, :5])


def test_pad_matches_the_tokenizer_padding_and_crops_back():
    x = torch.rand(1, 3, 7, 12, 20) * 2 - 1
    with pytest.raises(ValueError, match="pad=True"):
        trivial_codec(x)
    y = trivial_codec(x, pad=True)
    assert y.shape == x.shape and y.abs().max() <= 1


def test_bad_rank_is_refused():
    with pytest.raises(ValueError, match="pixels must be"):
        trivial_codec(torch.zeros(3, 9, 16, 16))
