"""Small parts of the diffusion stage: conditioning, learning-rate schedule, media writing."""

from __future__ import annotations

import av
import pytest
import torch

from common.lr import WarmupCosineLR
from walt.core.backbone_inputs import BackboneInputs, ConditionConfig, build_conditions
from walt.media import contact_sheet, loss_curve, write_gif, write_mp4_clip

NO_FRAMES = BackboneInputs(labels=True, extra=1)
FRAMES = BackboneInputs(labels=True, frames=True)


def _stream(b: int = 4) -> dict:
    return {"label": torch.tensor([0, 1, -1, 2][:b]), "fps": torch.full((b,), 8.0)}


def test_conditions_drop_unlabelled_and_respect_probabilities():
    z0 = torch.randn(4, 8, 5, 2, 2)
    cfg = ConditionConfig(p_drop_class=0.0)
    conds = build_conditions(_stream(), cfg, z0=z0, training=True, inputs=NO_FRAMES)
    assert conds.drop_class.tolist() == [False, False, True, False]
    assert conds.class_labels.min() >= 0  # -1 is mapped to a valid index, and dropped
    cfg = ConditionConfig(p_drop_class=1.0)
    conds = build_conditions(_stream(), cfg, z0=z0, training=True, inputs=NO_FRAMES)
    assert conds.drop_class.all()
    # Validation never drops at random.
    conds = build_conditions(_stream(), cfg, z0=z0, training=False, inputs=NO_FRAMES)
    assert conds.drop_class.tolist() == [False, False, True, False]


def test_frame_conditioning_masks_the_loss_to_generated_frames():
    torch.manual_seed(0)
    z0 = torch.randn(64, 8, 5, 2, 2)
    cfg = ConditionConfig(p_frame_cond=1.0, frame_cond_choices=[1, 2])
    conds = build_conditions({}, cfg, z0=z0, training=True, inputs=FRAMES)
    mask = conds.frame_cond[:, -1:, :, :1, :1]  # (B, 1, t, 1, 1), the c_fp mask channel
    known = mask.flatten(1).sum(1)
    assert set(known.tolist()) == {1.0, 2.0}  # image-to-video and video prediction both drawn
    torch.testing.assert_close(conds.loss_mask, 1.0 - mask)
    torch.testing.assert_close(conds.frame_cond[:, :-1], z0 * mask)
    # Guidance over c_fp is its own pass: the label's uncond pass keeps the frames.
    assert "frame_cond" not in conds.model_kwargs(drop_frames=True)
    torch.testing.assert_close(conds.model_kwargs(uncond=True)["frame_cond"], conds.frame_cond)


def test_frame_conditioning_off_at_validation():
    z0 = torch.randn(3, 8, 5, 2, 2)
    cfg = ConditionConfig(p_frame_cond=1.0)
    conds = build_conditions({}, cfg, z0=z0, training=False, inputs=FRAMES)
    assert conds.frame_cond.abs().sum() == 0
    assert conds.loss_mask.min() == 1.0


def test_uncond_kwargs_drop_labels_and_text():
    z0 = torch.randn(2, 8, 1, 2, 2)
    stream = {
        "label": torch.tensor([3, 4]),
        "text_emb": torch.randn(2, 5, 16),
        "text_mask": torch.ones(2, 5, dtype=torch.bool),
    }
    conds = build_conditions(stream, ConditionConfig(p_drop_class=0, p_drop_text=0), z0=z0,
                             training=True, inputs=BackboneInputs(labels=True, text=True))
    kw = conds.model_kwargs()
    assert not kw["drop_class"].any() and not kw["drop_text"].any()
    kw = conds.model_kwargs(uncond=True)
    assert kw["drop_class"].all() and kw["drop_text"].all()


def test_fps_condition_is_passed_as_extra_scalar():
    z0 = torch.randn(4, 8, 5, 2, 2)
    conds = build_conditions(_stream(), ConditionConfig(use_fps=True), z0=z0, training=False,
                             inputs=NO_FRAMES)
    assert conds.extra_cond.shape == (4, 1)


@pytest.mark.parametrize("warmup,total", [(0, 10), (5, 20)])
def test_warmup_cosine_shape(warmup, total):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = WarmupCosineLR(opt, warmup_steps=warmup, total_steps=total, min_lr_ratio=0.1)
    lrs = []
    for _ in range(total + 3):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    if warmup:
        assert lrs[0] < lrs[warmup - 1] < lrs[warmup] + 1e-9  # rising during warmup
    assert lrs[warmup] == pytest.approx(1.0, abs=0.05)
    assert lrs[-1] == pytest.approx(0.1)
    assert all(a >= b - 1e-12 for a, b in zip(lrs[warmup:], lrs[warmup + 1 :]))


def test_media_writers_roundtrip(tmp_path):
    video = torch.linspace(-1, 1, 3 * 5 * 10 * 14).reshape(3, 5, 10, 14)
    mp4 = write_mp4_clip(video, tmp_path / "a.mp4", fps=8)
    with av.open(str(mp4)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 5 and frames[0].shape == (10, 14, 3)
    gif = write_gif(video, tmp_path / "a.gif", scale=2)
    with av.open(str(gif)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 5
    sheet = contact_sheet(video[None].repeat(2, 1, 1, 1, 1), tmp_path / "s.png", labels=["a", "b"])
    assert sheet.stat().st_size > 0
    with pytest.raises(ValueError, match="expected a"):
        write_mp4_clip(video[0], tmp_path / "bad.mp4")


def test_loss_curve(tmp_path):
    csv = tmp_path / "metrics.csv"
    csv.write_text("step,train/loss_video,val/loss_video\n0,1.0,\n1,0.5,\n1,,0.7\n2,0.25,\n")
    out = loss_curve(csv, tmp_path / "loss.png")
    assert out.stat().st_size > 1000
    (tmp_path / "empty.csv").write_text("step,train/loss\n")
    with pytest.raises(ValueError, match="no logged rows"):
        loss_curve(tmp_path / "empty.csv", tmp_path / "x.png")


def test_training_draws_interpolation_beside_prefix_masks():
    z0 = torch.randn(256, 8, 5, 2, 2)
    cfg = ConditionConfig(p_frame_cond=0.3, p_interpolate=0.5, interpolate_every=[2])
    conds = build_conditions({}, cfg, z0=z0, training=True, inputs=FRAMES,
                             generator=torch.Generator().manual_seed(0))
    rows = {tuple(r) for r in conds.frame_cond[:, -1, :, 0, 0].tolist()}
    assert rows == {(0.0,) * 5, (1.0, 0, 0, 0, 0), (1.0, 1.0, 0, 0, 0), (1.0, 0, 1.0, 0, 1.0)}
    torch.testing.assert_close(conds.loss_mask[:, 0, :, 0, 0], 1 - conds.frame_cond[:, -1, :, 0, 0])


def test_sampling_frame_mask_needs_a_frame_conditioned_backbone():
    z0 = torch.zeros(1, 8, 3, 2, 2)
    with pytest.raises(ValueError, match="use_frame_cond"):
        build_conditions({"label": torch.tensor([0])}, ConditionConfig(), z0=z0, training=False,
                         inputs=NO_FRAMES, frame_mask=torch.ones(1, 3))


def test_mp4_writer_takes_frames_incrementally(tmp_path):
    import numpy as np

    from data.encode import open_mp4

    with open_mp4(tmp_path / "long.mp4", height=10, width=14, fps=12) as write:
        for i in range(3):
            write(np.full((4, 10, 14, 3), 60 * i, np.uint8))
        assert not (tmp_path / "long.mp4").exists()  # atomic: in place only once complete
    with av.open(str(tmp_path / "long.mp4")) as c:
        assert float(c.streams.video[0].average_rate) == 12.0
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 12 and abs(int(frames[-1].mean()) - 120) <= 3
    with pytest.raises(ValueError, match="frames must be"), open_mp4(
        tmp_path / "bad.mp4", height=10, width=14
    ) as write:
        write(np.zeros((2, 8, 14, 3), np.uint8))
    assert not (tmp_path / "bad.mp4").exists()
