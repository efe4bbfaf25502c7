"""Windowed attention vs full attention, backend agreement, image isolation, torch.compile."""

from __future__ import annotations

import pytest
import torch
from einops import rearrange

from models import WindowBlock, WindowedDiT, attention, xformers_available
from models.windows import mask_to_bias, window_merge, window_partition


def _randomize(module: torch.nn.Module, seed: int = 1) -> None:
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, 0.1)


def _block(kind: str, window, table, **kw) -> WindowBlock:
    torch.manual_seed(0)
    block = WindowBlock(
        dim=32,
        num_heads=4,
        kind=kind,
        window=window,
        table_window=table,
        attn_backend="reference",
        **kw,
    )
    _randomize(block)
    return block


def _full_window_bias(block: WindowBlock, grid, window) -> torch.Tensor:
    """Bias over all tokens of the grid that reproduces window attention (independent build)."""
    axes = [torch.arange(s) for s in grid]
    coords = rearrange(torch.stack(torch.meshgrid(*axes, indexing="ij")), "k t h w -> (t h w) k")
    win = torch.tensor(window)
    same = ((coords[:, None] // win) == (coords[None] // win)).all(-1)  # (N, N)
    table = block.rel_pos.table
    centre = [(n - 1) // 2 for n in table.shape[1:]]
    # Pairs in different windows are masked; clamp their offsets only to keep indices in range.
    rel = torch.maximum(
        torch.minimum(coords[:, None] - coords[None], win - 1), 1 - win
    )  # (N, N, 3)
    bias = table[:, rel[..., 0] + centre[0], rel[..., 1] + centre[1], rel[..., 2] + centre[2]]
    return bias + mask_to_bias(same, bias.dtype)[None]


@pytest.mark.parametrize(
    ("grid", "window"), [((4, 6, 6), (2, 3, 3)), ((5, 6, 10), (5, 4, 4)), ((3, 5, 7), (2, 4, 4))]
)
def test_window_attention_equals_masked_full_attention(grid, window) -> None:
    block = _block("spatiotemporal", window, window)
    x = torch.randn(2, *grid, 32)
    windowed = block._self_attention(x, None)
    flat = rearrange(x, "b t h w d -> b (t h w) d")
    full = block.attn(flat, _full_window_bias(block, grid, window))  # (B, N, D)
    full = rearrange(full, "b (t h w) d -> b t h w d", t=grid[0], h=grid[1])
    torch.testing.assert_close(windowed, full, rtol=1e-5, atol=1e-5)


def test_partition_merge_roundtrip_with_padding() -> None:
    x = torch.randn(2, 3, 5, 7, 4)
    windows = window_partition(x, (2, 4, 4))
    assert windows.shape == (2, 2 * 2 * 2, 32, 4)
    torch.testing.assert_close(window_merge(windows, (2, 4, 4), (3, 5, 7)), x)


def _random_bias(shape, masked_fraction: float) -> torch.Tensor:
    bias = torch.randn(shape)
    keep = torch.rand(shape) > masked_fraction
    keep |= torch.eye(shape[-2], shape[-1], dtype=torch.bool)  # never a fully masked row
    return bias.masked_fill(~keep, float("-inf"))


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("nk", [16, 23])
def test_sdpa_matches_reference(with_bias: bool, nk: int) -> None:
    torch.manual_seed(0)
    q = torch.randn(2, 3, 4, 16, 8)
    k, v = torch.randn(2, 3, 4, nk, 8), torch.randn(2, 3, 4, nk, 8)
    bias = _random_bias((2, 3, 1, 16, nk), 0.4) if with_bias else None
    ref = attention(q, k, v, bias, backend="reference")
    out = attention(q, k, v, bias, backend="sdpa")
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(
    not (xformers_available() and torch.cuda.is_available()),
    reason="xformers backend needs the xformers package and a CUDA device",
)
def test_xformers_matches_reference() -> None:
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 4, 16, 8, device="cuda") for _ in range(3))
    bias = _random_bias((2, 3, 1, 16, 16), 0.4).cuda()
    ref = attention(q, k, v, bias, backend="reference")
    out = attention(q, k, v, bias, backend="xformers")
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_unknown_backend_is_named(monkeypatch) -> None:
    from models.attention import default_attn_backend

    monkeypatch.setenv("WALT_ATTN_BACKEND", "flashy")
    with pytest.raises(ValueError, match="flashy"):
        default_attn_backend()
    monkeypatch.setenv("WALT_ATTN_BACKEND", "reference")
    assert default_attn_backend() == "reference"


def test_model_backends_agree_with_padding_masks_and_text() -> None:
    outs = []
    for backend in ("reference", "sdpa"):
        torch.manual_seed(0)
        model = WindowedDiT.from_preset(
            "tiny",
            max_latent_size=(5, 8, 8),
            spatiotemporal_window=(2, 4, 4),
            spatial_window=(4, 4),
            text_dim=12,
            attn_backend=backend,
        )
        _randomize(model)
        torch.manual_seed(2)
        x = torch.randn(2, 8, 3, 6, 7)
        text, mask = torch.randn(2, 5, 12), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]).bool()
        outs.append(model(x, torch.tensor([3.0, 700.0]), text_emb=text, text_mask=mask))
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("grid", [(5, 4, 4), (6, 5, 7)])
def test_image_frame_in_st_block_equals_image_alone(grid) -> None:
    """Identity mask over time: a packed image frame attends only to itself."""
    block = _block("spatiotemporal", (5, 4, 4), (5, 4, 4))
    x = torch.randn(1, *grid, 32)
    c = torch.randn(1, 32)
    shared = torch.randn(1, 6 * 32)
    is_image = torch.zeros(1, grid[0], dtype=torch.bool)
    is_image[0, 2] = True
    groups = torch.where(is_image, torch.arange(1, grid[0] + 1), torch.zeros(1, dtype=torch.long))
    packed = block(x, c, shared, groups=groups)
    alone = block(x[:, 2:3], c, shared)
    torch.testing.assert_close(packed[:, 2:3], alone, rtol=1e-5, atol=1e-5)
    # Without the mask the frame would mix with its neighbours (the test can fail).
    mixed = block(x, c, shared)
    assert not torch.allclose(mixed[:, 2:3], alone, atol=1e-3)


def test_image_frames_through_whole_model_equal_image_alone() -> None:
    torch.manual_seed(0)
    model = WindowedDiT.from_preset(
        "tiny", max_latent_size=(5, 8, 8), spatiotemporal_window=(5, 4, 4)
    )
    _randomize(model)
    video = torch.randn(1, 8, 5, 8, 8)
    image = torch.randn(1, 8, 1, 8, 8)
    packed = torch.cat([video[:, :, :4], image], dim=2)  # 4 video frames + 1 image frame
    image_frames = torch.tensor([[False, False, False, False, True]])
    y_packed = model(packed, torch.tensor([9.0]), image_frames=image_frames)
    y_alone = model(image, torch.tensor([9.0]))
    torch.testing.assert_close(y_packed[:, :, 4:], y_alone, rtol=1e-4, atol=1e-4)


def test_block_compiles_fullgraph_on_cpu() -> None:
    block = _block("spatiotemporal", (2, 4, 4), (2, 4, 4))
    x = torch.randn(1, 3, 5, 6, 32)
    c, shared = torch.randn(1, 32), torch.randn(1, 6 * 32)
    groups = torch.tensor([[0, 0, 3]])
    compiled = torch.compile(block, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(
        compiled(x, c, shared, groups=groups), block(x, c, shared, groups=groups)
    )


@pytest.mark.slow
def test_spatial_block_with_text_compiles_fullgraph_on_cpu() -> None:
    block = _block("spatial", None, (1, 4, 4), cross_attention=True)
    x = torch.randn(1, 2, 4, 4, 32)
    c, shared = torch.randn(1, 32), torch.randn(1, 6 * 32)
    text, mask = torch.randn(1, 3, 32), torch.tensor([[True, True, False]])
    compiled = torch.compile(block, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(x, c, shared, text, mask), block(x, c, shared, text, mask))


@pytest.mark.parametrize(
    "bias_shape", [(1, 3, 16, 23), (4, 3, 16, 23), (4, 1, 16, 23), (1, 1, 16, 23)]
)
@pytest.mark.parametrize("rows", [None, 1, 2, 6])  # (batch, head) rows per chunk; None: all
def test_sdpa_learnable_bias_gradients_match_reference(bias_shape, rows, monkeypatch) -> None:
    """On CPU a bias that needs a gradient takes the fused-forward / chunked-backward kernel;
    chunks of 1 or 2 of the 3 heads, or of whole heads of 2 samples, reduce the bias gradient
    over the broadcast dims block by block."""
    import models.bias_grad_attention as bga

    if rows is not None:
        monkeypatch.setattr(bga, "CHUNK_ELEMENTS", rows * 16 * 23)
    calls = []
    monkeypatch.setattr(
        bga.BiasGradAttention, "apply", _counting(bga.BiasGradAttention.apply, calls)
    )
    torch.manual_seed(0)
    q = torch.randn(4, 3, 16, 8)
    k, v = torch.randn(4, 3, 23, 8), torch.randn(4, 3, 23, 8)
    base = _random_bias(bias_shape, 0.4)
    grads = []
    for backend in ("reference", "sdpa"):
        leaves = [t.clone().requires_grad_() for t in (q, k, v, base)]
        out = attention(*leaves, backend=backend)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads.append([out.detach()] + [t.grad for t in leaves])
    assert calls, "the CPU bias-gradient kernel was not used"
    for name, ref, got in zip(("out", "dq", "dk", "dv", "dbias"), grads[0], grads[1]):
        finite = torch.isfinite(ref)
        assert torch.equal(finite, torch.isfinite(got)), name
        torch.testing.assert_close(got[finite], ref[finite], rtol=1e-4, atol=1e-5, msg=name)


def test_bias_gradient_kernel_under_bf16_autocast_matches_fp32() -> None:
    """Under bf16 autocast q, k, v are bf16 while the learned bias stays float32: the chunked
    backward must take the mix and stay close to the float32 gradients."""
    from models.bias_grad_attention import bias_grad_attention

    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 16, 8), torch.randn(2, 3, 23, 8), torch.randn(2, 3, 23, 8)
    bias = torch.randn(1, 3, 16, 23) * 0.4
    grads = []
    for dtype in (torch.float32, torch.bfloat16):
        leaves = [t.clone().requires_grad_() for t in (q, k, v, bias)]
        qkv = [t.to(dtype) for t in leaves[:3]]
        out = bias_grad_attention(*qkv, leaves[3])
        (out.float() * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads.append([t.grad for t in leaves])
    for name, ref, got in zip(("dq", "dk", "dv", "dbias"), *grads):
        assert got.dtype == torch.float32, name
        torch.testing.assert_close(got, ref, rtol=0.05, atol=0.05, msg=name)


def _counting(fn, calls):
    def wrapped(*args):
        calls.append(1)
        return fn(*args)

    return wrapped
