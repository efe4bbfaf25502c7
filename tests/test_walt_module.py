"""WALTModule: training tricks, loss decrease, resume equality, errors, generation."""

from __future__ import annotations

import warnings

import lightning.pytorch as pl
import pytest
import torch

from models.backbone import DECLARATION
from tests.walt_fixtures import (
    FRAMES,
    SIZE,
    clip_stream,
    repeat_loader,
    tiny_backbone,
    tiny_module,
    tiny_tokenizer_file,
)
from walt.core.generation import sampling_stream
from walt.lightning import ConditionConfig

warnings.filterwarnings("ignore", ".*does not have many workers.*")


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return tiny_tokenizer_file(tmp_path_factory.mktemp("tok") / "tiny.safetensors")


def _trainer(tmp_path, steps: int, **kw) -> pl.Trainer:
    return pl.Trainer(
        max_steps=steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **kw,
    )


class _Recorder(torch.nn.Module):
    """Wraps a backbone and records the keyword arguments of every call."""

    def __init__(self, net):
        super().__init__()
        self.net, self.calls = net, []
        for name in DECLARATION:  # a wrapper declares the inputs of what it wraps
            setattr(self, name, getattr(net, name))

    def forward(self, x, t, **kw):
        self.calls.append({k: v for k, v in kw.items()})
        return self.net(x, t, **kw)


def test_self_conditioning_feeds_stopgrad_estimate(tok, tmp_path):
    rec = _Recorder(tiny_backbone())
    module = tiny_module(tok, backbone=rec, conditioning=ConditionConfig(p_self_cond=1.0))
    _trainer(tmp_path, 1).fit(module, repeat_loader({"video": clip_stream()}, 1))
    first, second = rec.calls[0], rec.calls[1]
    assert first.get("self_cond") is None
    assert second["self_cond"] is not None and not second["self_cond"].requires_grad
    rec.calls.clear()
    module = tiny_module(tok, backbone=rec, conditioning=ConditionConfig(p_self_cond=0.0))
    _trainer(tmp_path, 1).fit(module, repeat_loader({"video": clip_stream()}, 1))
    assert len(rec.calls) == 1 and rec.calls[0]["self_cond"] is None


def test_frame_conditioning_reaches_the_backbone(tok, tmp_path):
    rec = _Recorder(tiny_backbone())
    cfg = ConditionConfig(p_self_cond=0.0, p_frame_cond=1.0, frame_cond_choices=[1])
    module = tiny_module(tok, backbone=rec, conditioning=cfg)
    _trainer(tmp_path, 1).fit(module, repeat_loader({"video": clip_stream()}, 1))
    fc = rec.calls[0]["frame_cond"]  # (B, c + 1, t, h, w)
    assert fc.shape == (2, 9, 3, 2, 2)
    assert fc[:, -1, 0].eq(1).all() and fc[:, -1, 1:].eq(0).all()


def test_joint_step_logs_both_streams(tok, tmp_path):
    module = tiny_module(tok)
    batch = {"video": clip_stream(), "image": clip_stream(3, frames=1, seed=1)}
    trainer = _trainer(tmp_path, 2)
    trainer.fit(module, repeat_loader(batch, 2))
    logged = trainer.callback_metrics
    assert {"train/loss_video", "train/loss_image", "train/loss"} <= set(logged)
    assert torch.isfinite(logged["train/loss"])


def _fixed_eval_loss(module, z0) -> float:
    g = torch.Generator().manual_seed(123)
    t = torch.linspace(0, 999, 16).long()
    z0 = z0[:1].repeat(16, 1, 1, 1, 1)
    noise = torch.randn(z0.shape, generator=g)
    z_t = module.diffusion.q_sample(z0, t, noise)
    labels = torch.zeros(16, dtype=torch.long)
    with torch.no_grad():
        pred = module.backbone(z_t, t.float(), class_labels=labels)
    return float(module.diffusion.loss(pred, z0, noise, t))


def test_tiny_model_drives_loss_down_5x_on_one_clip(tok, tmp_path):
    torch.manual_seed(0)
    module = tiny_module(tok, conditioning=ConditionConfig(p_self_cond=0.0, p_drop_class=0.0))
    # One fixed clip, repeated into a batch of 16 as precomputed (raw) latents.
    raw = module.codec.vae.encode(clip_stream(1)["pixels"])
    stream = {"latents": raw.repeat(16, 1, 1, 1, 1), "label": torch.zeros(16, dtype=torch.long)}
    z0 = module.codec.latents({"latents": raw})
    before = _fixed_eval_loss(module, z0)
    _trainer(tmp_path, 100).fit(module, repeat_loader({"video": stream}, 100))
    after = _fixed_eval_loss(module, z0)
    assert after * 5 <= before, (before, after)


def test_precomputed_latents_give_the_same_loss(tok):
    module = tiny_module(tok)
    stream = clip_stream()
    z_pixels = module.codec.latents(stream)
    z_pre = module.codec.latents({"latents": module.codec.vae.encode(stream["pixels"])})
    losses = []
    for z0 in (z_pixels, z_pre):
        gen = torch.Generator().manual_seed(5)
        conds = module._conditions(stream, z0, training=True, generator=gen)
        timesteps = module.diffusion.sample_timesteps(z0.shape[0], generator=gen)
        losses.append(module._diffusion_loss(module.backbone, z0, conds, gen, timesteps=timesteps,
                                             p_self_cond=0.9))
    torch.testing.assert_close(losses[0], losses[1])


def test_resume_continues_the_same_run(tok, tmp_path):
    """2N straight steps equal N steps, a checkpoint, a fresh process state, then N more."""
    batch = {"video": clip_stream()}
    torch.manual_seed(0)
    straight = tiny_module(tok)
    _trainer(tmp_path / "a", 6).fit(straight, repeat_loader(batch, 6))

    torch.manual_seed(0)
    first = tiny_module(tok)
    trainer = _trainer(tmp_path / "b", 3)
    trainer.fit(first, repeat_loader(batch, 6))
    ckpt = tmp_path / "half.ckpt"
    trainer.save_checkpoint(ckpt)
    torch.manual_seed(999)  # a different process state must not matter
    resumed = tiny_module(tok)
    _trainer(tmp_path / "c", 6).fit(resumed, repeat_loader(batch, 6), ckpt_path=ckpt)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=f"{name} differs after resume")
    full = torch.load(ckpt, weights_only=True)
    assert not any(k.startswith("codec.") for k in full["state_dict"])  # tokenizer not copied
    assert any(k.startswith("ema.") for k in full["state_dict"])


def test_bad_states_raise_clear_errors(tok, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tiny_module(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="latent channels"):
        tiny_module(tiny_tokenizer_file(tmp_path / "c4.safetensors", latent_channels=4))
    with pytest.raises(ValueError, match="latent_channels"):
        tiny_module(tok, backbone=tiny_backbone(in_channels=4), latent_channels=8)
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        tiny_module(tok, num_frames=8)


def test_nonfinite_loss_is_skipped_then_stops(tok, tmp_path):
    module = tiny_module(tok, max_nonfinite_steps=2)
    stream = clip_stream()
    stream["pixels"] = stream["pixels"] * float("nan")
    before = {k: v.clone() for k, v in module.backbone.state_dict().items()}
    with pytest.raises(FloatingPointError, match="non-finite for 3 consecutive"):
        _trainer(tmp_path, 10).fit(module, repeat_loader({"video": stream}, 10))
    for k, v in module.backbone.state_dict().items():
        torch.testing.assert_close(v, before[k])  # skipped steps never touched the weights


def test_generate_shapes_and_frame_conditioning(tok):
    module = tiny_module(tok).eval()
    g = torch.Generator().manual_seed(0)
    out = module.generate(stream=sampling_stream(labels=torch.tensor([0, 2])), generator=g,
                          sampling=module.sampling.override({"num_inference_steps": 3}))
    assert out.shape == (2, 3, FRAMES, SIZE, SIZE) and out.abs().max() <= 1
    cond = clip_stream()["pixels"]
    mask = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    two = module.sampling.override({"num_inference_steps": 2, "guidance_scale": 2.0})
    out = module.generate(stream=sampling_stream(labels=torch.tensor([0, 1])), cond_pixels=cond,
                          cond_mask=mask, sampling=two, generator=g)
    assert out.shape == (2, 3, FRAMES, SIZE, SIZE)
    with pytest.raises(ValueError, match="cond_mask"):
        module.generate(stream=sampling_stream(labels=torch.tensor([0, 1])), cond_pixels=cond,
                        sampling=two)


@pytest.mark.parametrize("kind", ["wandb", "tensorboard", "csv"])
def test_sample_logger_writes_media(kind, tok, tmp_path):
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger

    from walt.lightning import SampleLogger

    logger = {
        "wandb": lambda: WandbLogger(offline=True, save_dir=str(tmp_path), project="walt-test"),
        "tensorboard": lambda: TensorBoardLogger(save_dir=str(tmp_path)),
        "csv": lambda: CSVLogger(save_dir=str(tmp_path)),
    }[kind]()
    module = tiny_module(tok)
    trainer = pl.Trainer(
        max_steps=2, accelerator="cpu", logger=logger, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
        callbacks=[SampleLogger(every_n_steps=2, num_samples=2,
                                  sampling={"num_inference_steps": 2})],
    )
    trainer.fit(module, repeat_loader({"video": clip_stream()}, 2))
    written = sorted(p.name for p in tmp_path.rglob("step_0000002/*"))
    assert written == ["contact_sheet.png", "sample_000.gif", "sample_000.mp4", "sample_001.gif",
                       "sample_001.mp4"]


class _Snapshots(pl.Callback):
    """The backbone and EMA after every optimizer step."""

    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, module, *args) -> None:
        self.states.append({k: v.detach().clone() for k, v in module.state_dict().items()
                            if k.startswith(("backbone.", "ema."))})


def _poison_gradient(module, *, at_calls: set[int]) -> None:
    """NaN into one weight's gradient on the given backward passes (1-based); the loss stays
    finite, so only a gradient check can catch it."""
    calls = {"n": 0}

    def hook(grad):
        calls["n"] += 1
        return grad * float("nan") if calls["n"] in at_calls else grad

    next(module.backbone.parameters()).register_hook(hook)


def test_nonfinite_gradient_with_finite_loss_is_skipped(tok, tmp_path):
    module = tiny_module(tok, max_nonfinite_steps=1)
    _poison_gradient(module, at_calls={2})
    snaps = _Snapshots()
    trainer = _trainer(tmp_path, 3, gradient_clip_val=1.0, callbacks=[snaps])
    trainer.fit(module, repeat_loader({"video": clip_stream()}, 3))
    first, skipped, third = snaps.states
    for state in snaps.states:
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    for key, value in first.items():  # the poisoned step changed nothing, the EMA included
        torch.testing.assert_close(skipped[key], value, msg=key)
    assert any(not torch.equal(third[k], skipped[k]) for k in first if k.startswith("ema.module"))
    assert float(trainer.callback_metrics["train/nonfinite_steps"]) == 1.0
    assert int(module.nonfinite.total) == 1 and int(module.nonfinite.run) == 0

    stop = tiny_module(tok, max_nonfinite_steps=1)
    _poison_gradient(stop, at_calls={2, 3})
    with pytest.raises(FloatingPointError, match="gradient was non-finite for 2 consecutive"):
        _trainer(tmp_path, 5, gradient_clip_val=1.0).fit(
            stop, repeat_loader({"video": clip_stream()}, 5)
        )


class _EmaAtStep(pl.Callback):
    """The in-memory EMA once step ``step`` is fully done (at the next batch's start)."""

    def __init__(self, step: int) -> None:
        self.step, self.state = step, None

    def on_train_batch_start(self, trainer, module, *args) -> None:
        if trainer.global_step == self.step and self.state is None:
            self.state = {k: v.clone() for k, v in module.state_dict().items()
                          if k.startswith("ema.")}


def test_checkpoint_holds_the_ema_of_its_step(tok, tmp_path):
    """A checkpoint written every 2 steps holds the EMA after that step's update, and resuming
    from it equals an uninterrupted run, the EMA included."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    batch = {"video": clip_stream()}
    torch.manual_seed(0)
    four = tiny_module(tok)
    at2 = _EmaAtStep(2)
    every2 = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=2, save_top_k=-1)
    pl.Trainer(max_steps=4, accelerator="cpu", logger=False, enable_progress_bar=False,
               enable_model_summary=False, default_root_dir=tmp_path / "b",
               callbacks=[at2, every2]).fit(four, repeat_loader(batch, 4))
    ckpt = next((tmp_path / "ckpt").glob("*step=2.ckpt"))
    saved = torch.load(ckpt, weights_only=True)["state_dict"]
    for key, value in at2.state.items():
        torch.testing.assert_close(saved[key], value, msg=key)
    resumed = tiny_module(tok)
    _trainer(tmp_path / "c", 4).fit(resumed, repeat_loader(batch, 4), ckpt_path=ckpt)
    for (key, a), b in zip(four.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(b, a, msg=f"{key} differs after resume")


def test_skipped_samples_are_summed_over_streams(tok, tmp_path):
    video, image = clip_stream(), clip_stream(2, frames=1, seed=1)
    video["skipped"], image["skipped"] = torch.tensor([2]), torch.tensor([3])
    trainer = _trainer(tmp_path, 1)
    trainer.fit(tiny_module(tok), repeat_loader({"video": video, "image": image}, 1))
    assert float(trainer.callback_metrics["train/skipped_samples"]) == 5.0


@pytest.mark.parametrize("algorithm", ["norm", "value"])
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_fused_optimizer_gradients_are_clipped(tok, tmp_path, algorithm, precision):
    module = tiny_module(tok)
    assert module.configure_optimizers().defaults["fused"]  # as the configs
    clip, seen, bound = module.configure_gradient_clipping, [], 1e-4

    def clip_then_probe(optimizer, *args, **kwargs):  # the gradients the optimizer steps with
        clip(optimizer, *args, **kwargs)
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        seen.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))
                          if algorithm == "norm" else max(g.abs().max() for g in grads)))

    module.configure_gradient_clipping = clip_then_probe
    trainer = _trainer(tmp_path, 2, gradient_clip_val=bound, gradient_clip_algorithm=algorithm,
                       precision=precision)
    trainer.fit(module, repeat_loader({"video": clip_stream()}, 2))
    assert len(seen) == 2 and all(0 < s <= bound * 1.01 for s in seen), seen
