"""Conditioning inputs, their null values, zero-gate identity, gradients and checkpointing."""

from __future__ import annotations

import pytest
import torch

from models import WindowedDiT

B, C, T, H, W = 2, 8, 3, 8, 8


def _model(**overrides) -> WindowedDiT:
    torch.manual_seed(0)
    cfg = {
        "max_latent_size": (5, 8, 8),
        "spatiotemporal_window": (5, 4, 4),
        "num_classes": 10,
        "text_dim": 12,
        "num_extra_cond": 2,
    }
    model = WindowedDiT.from_preset("tiny", **{**cfg, **overrides})
    torch.manual_seed(1)
    with torch.no_grad():  # non-zero gates and heads, so every input can reach the output
        for p in model.parameters():
            p.normal_(0.0, 0.1)
    return model


def _inputs() -> dict:
    torch.manual_seed(2)
    return {
        "x": torch.randn(B, C, T, H, W),
        "timesteps": torch.tensor([10.0, 600.0]),
        "class_labels": torch.tensor([1, 7]),
        "text_emb": torch.randn(B, 4, 12),
        "text_mask": torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]]).bool(),
        "self_cond": torch.randn(B, C, T, H, W),
        "frame_cond": torch.randn(B, C + 1, T, H, W),
        "extra_cond": torch.tensor([[8.0, 2.0], [24.0, 1.0]]),
    }


def _run(model: WindowedDiT, inputs: dict) -> torch.Tensor:
    inputs = dict(inputs)
    return model(inputs.pop("x"), inputs.pop("timesteps"), **inputs)


CHANGES = {
    "timesteps": lambda v: v + 100.0,
    "class_labels": lambda v: (v + 1) % 10,
    "text_emb": lambda v: v + 1.0,
    "self_cond": lambda v: v + 1.0,
    "frame_cond": lambda v: v + 1.0,
    "extra_cond": lambda v: v + 5.0,
}


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_each_condition_changes_the_output(name: str) -> None:
    model, inputs = _model(), _inputs()
    base = _run(model, inputs)
    changed = _run(model, {**inputs, name: CHANGES[name](inputs[name])})
    assert not torch.allclose(base, changed, atol=1e-4)


def test_masked_text_tokens_are_ignored() -> None:
    model, inputs = _model(), _inputs()
    base = _run(model, inputs)
    garbage = inputs["text_emb"].clone()
    garbage[:, 2:] = 100.0  # masked out for sample 0, real for sample 1
    out = _run(model, {**inputs, "text_emb": garbage})
    torch.testing.assert_close(out[0], base[0], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out[1], base[1])  # sample 1 sees all 4 tokens


@pytest.mark.parametrize(
    ("dropped", "absent"),
    [
        ({"drop_class": torch.tensor([True, True])}, {"class_labels": None}),
        ({"class_labels": torch.tensor([-1, -1])}, {"class_labels": None}),
        ({"drop_text": torch.tensor([True, True])}, {"text_emb": None, "text_mask": None}),
        ({"self_cond": torch.zeros(B, C, T, H, W)}, {"self_cond": None}),
        ({"frame_cond": torch.zeros(B, C + 1, T, H, W)}, {"frame_cond": None}),
    ],
)
def test_null_values_when_dropped_or_absent(dropped: dict, absent: dict) -> None:
    model, inputs = _model(), _inputs()
    a = _run(model, {**inputs, **dropped})
    b = _run(model, {**inputs, **absent})
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(a, _run(model, inputs), atol=1e-4)


def test_drop_is_per_sample() -> None:
    model, inputs = _model(), _inputs()
    base = _run(model, inputs)
    out = _run(model, {**inputs, "drop_class": torch.tensor([False, True])})
    torch.testing.assert_close(out[0], base[0])
    assert not torch.allclose(out[1], base[1], atol=1e-4)


def test_conditions_the_model_lacks_are_rejected() -> None:
    model = _model(num_classes=0, text_dim=0, num_extra_cond=0, use_self_cond=False)
    x, t = torch.randn(1, C, 1, H, W), torch.tensor([1.0])
    for kwargs, match in [
        ({"class_labels": torch.tensor([1])}, "num_classes=0"),
        ({"text_emb": torch.randn(1, 2, 12)}, "text_dim=0"),
        ({"extra_cond": torch.randn(1, 2)}, "num_extra_cond=0"),
        ({"self_cond": torch.randn(1, C, 1, H, W)}, "use_self_cond=False"),
    ]:
        with pytest.raises(ValueError, match=match):
            model(x, t, **kwargs)
    with pytest.raises(ValueError, match="class_labels outside"):
        _model()(x, t, class_labels=torch.tensor([10]))


@pytest.mark.parametrize("adaln", ["lora", "classic"])
def test_zero_gates_make_every_block_the_identity(adaln: str) -> None:
    torch.manual_seed(0)
    model = WindowedDiT.from_preset("tiny", max_latent_size=(5, 8, 8), text_dim=12, adaln=adaln)
    x = torch.randn(B, 5, 8, 8, 64)
    c_act = torch.randn(B, 64)
    shared = model.shared_adaln(c_act) if model.shared_adaln is not None else None
    text, mask = torch.randn(B, 3, 64), torch.ones(B, 3, dtype=torch.bool)
    for block in model.blocks:
        torch.testing.assert_close(block(x, c_act, shared, text, mask), x, rtol=0, atol=0)


@pytest.mark.parametrize("adaln", ["lora", "classic"])
def test_every_parameter_gets_a_finite_gradient(adaln: str) -> None:
    model, inputs = _model(adaln=adaln), _inputs()
    # One dropped sample per condition, so the learned null text and label are used too.
    drops = {"drop_text": torch.tensor([True, False]), "drop_class": torch.tensor([False, True])}
    _run(model, {**inputs, **drops}).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_grad_checkpointing_matches_plain_backward() -> None:
    grads = []
    for flag in (False, True):
        model, inputs = _model(grad_checkpointing=flag), _inputs()
        model.train()
        _run(model, {**inputs, "drop_text": torch.tensor([True, False])}).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-6)
