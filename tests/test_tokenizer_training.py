"""TokenizerModule: GAN steps, exact resume, NaN guard, checkpoint loading, perceptual loss."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from tokenizer import TokenizerModule, load_tokenizer
from tokenizer.loading import read_checkpoint

SMALL_DISC = {"disc_base_channels": 4, "disc_channel_mults": (1, 2)}


class StreamClips(Dataset):
    """Deterministic joint batches in the datamodule's format: a video and an image stream."""

    def __init__(self, n: int = 4, *, nan_from: int | None = None) -> None:
        self.n, self.nan_from = n, nan_from

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        video = torch.rand(3, 5, 16, 16, generator=g) * 2 - 1
        if self.nan_from is not None and i >= self.nan_from:
            video[0, 0, 0, 0] = float("nan")
        image = torch.rand(3, 1, 16, 16, generator=g) * 2 - 1
        return {"video": {"pixels": video}, "image": {"pixels": image}}


def loader(**kwargs) -> DataLoader:
    return DataLoader(StreamClips(**kwargs), batch_size=2, shuffle=False)


def trainer(root: Path, steps: int) -> L.Trainer:
    return L.Trainer(
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(root),
        accelerator="cpu",
    )


def adam(params) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=1e-3, betas=(0.0, 0.99))


def module(**kwargs) -> TokenizerModule:
    torch.manual_seed(0)
    return TokenizerModule(**{"optimizer": adam, "disc_start": 1, **SMALL_DISC, **kwargs})


def test_gan_steps_count_generator_steps_and_train_both(tmp_path):
    m = module(media_every=1, media_dir=str(tmp_path / "media"))
    disc_before = [p.detach().clone() for p in m.disc.parameters()]
    vae_before = [p.detach().clone() for p in m.vae.parameters()]
    tr = trainer(tmp_path, 3)
    tr.fit(m, loader())
    assert tr.global_step == 3  # the discriminator's steps do not advance global_step
    assert any(not torch.equal(a, b) for a, b in zip(disc_before, m.disc.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(vae_before, m.vae.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(vae_before, m.ema.module.parameters()))
    assert float(m.lecam.ema_real) != 0.0
    assert sorted(p.name for p in (tmp_path / "media").iterdir())[0].endswith(".mp4")


def test_resume_continues_the_same_run(tmp_path):
    # One batch per epoch: Lightning restarts a map-style loader's epoch on resume, so the data
    # order is the same for both runs; everything else (both optimisers, the EMA, the LeCAM
    # statistics, the step and the step-seeded posterior noise) must come from the checkpoint.
    straight = module()
    trainer(tmp_path / "a", 4).fit(straight, loader(n=2))

    first = module()
    tr = trainer(tmp_path / "b", 2)
    tr.fit(first, loader(n=2))
    ckpt = tmp_path / "half.ckpt"
    tr.save_checkpoint(ckpt)

    resumed = module()
    tr2 = trainer(tmp_path / "c", 4)
    tr2.fit(resumed, loader(n=2), ckpt_path=str(ckpt))
    assert tr2.global_step == 4
    for name, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, msg=name)


def test_nonfinite_steps_are_skipped_then_stop(tmp_path):
    m = module(disc_start=-1, max_nonfinite_steps=5)
    tr = trainer(tmp_path, 2)
    tr.fit(m, loader(nan_from=2))  # batch 0 fine, batch 1 has NaN pixels
    assert int(m.nonfinite.total) == 1
    assert all(torch.isfinite(p).all() for p in m.vae.parameters())
    stop = module(disc_start=-1, max_nonfinite_steps=1)
    with pytest.raises(FloatingPointError, match="VAE loss was non-finite for 2 consecutive"):
        trainer(tmp_path, 10).fit(stop, loader(n=8, nan_from=0))


def test_checkpoint_loads_with_weights_only_and_uses_ema(tmp_path):
    m = module(disc_start=-1, ema_decay=0.5)
    tr = trainer(tmp_path, 2)
    tr.fit(m, loader())
    ckpt = tmp_path / "m.ckpt"
    tr.save_checkpoint(ckpt)
    assert "config" in read_checkpoint(ckpt)  # weights_only=True inside
    vae = load_tokenizer(ckpt)
    x = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    with torch.no_grad():
        ema = m.ema.module
        torch.testing.assert_close(vae.decode(vae.encode(x)), ema.decode(ema.encode(x)))
        raw = load_tokenizer(ckpt, use_ema=False)
        assert not torch.allclose(raw.encode(x), vae.encode(x))
    with pytest.raises(FileNotFoundError, match="not found"):
        load_tokenizer(tmp_path / "missing.ckpt")


def test_perceptual_loss_from_local_random_weights(tmp_path):
    import timm
    from safetensors.torch import save_file

    from tokenizer.training.perceptual import PerceptualLoss

    torch.manual_seed(0)
    net = timm.create_model("resnet18", pretrained=False, num_classes=0)
    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    loss = PerceptualLoss(backbone="resnet18", weights_path=str(path), max_frames=2)
    x = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    y = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    assert loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(x, y).item() > 0.0
    with pytest.raises(FileNotFoundError, match="not found"):
        PerceptualLoss(backbone="resnet18", weights_path=str(tmp_path / "none.safetensors"))
    with pytest.raises(ValueError, match="perceptual_weights"):
        TokenizerModule(perceptual_weight=0.1)


class Snapshots(L.Callback):
    """The VAE and its EMA after every training step."""

    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, module, *args) -> None:
        self.states.append({k: v.detach().clone() for k, v in module.state_dict().items()
                            if k.startswith(("vae.", "ema."))})


def poison_gradient(m: TokenizerModule, *, at_calls: set[int]) -> None:
    """NaN into one VAE weight's gradient on the given backward passes (1-based); the loss
    stays finite."""
    calls = {"n": 0}

    def hook(grad):
        calls["n"] += 1
        return grad * float("nan") if calls["n"] in at_calls else grad

    m.vae.decoder.conv_out.conv.weight.register_hook(hook)


def test_nonfinite_gradient_with_finite_loss_is_skipped(tmp_path):
    m = module(disc_start=-1, max_nonfinite_steps=1)
    poison_gradient(m, at_calls={2})
    snaps = Snapshots()
    tr = trainer(tmp_path, 3)
    tr.callbacks.append(snaps)
    tr.fit(m, loader(n=8))  # a skipped step does not advance global_step: 4 batches
    first, skipped, third = snaps.states[:3]
    for state in snaps.states:
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    for key, value in first.items():  # the poisoned step changed nothing, the EMA included
        torch.testing.assert_close(skipped[key], value, msg=key)
    assert any(not torch.equal(third[k], skipped[k]) for k in first if k.startswith("ema.module"))
    assert float(tr.callback_metrics["train/nonfinite_steps"]) == 1.0
    assert int(m.nonfinite.total) == 1

    stop = module(disc_start=-1, max_nonfinite_steps=1)
    poison_gradient(stop, at_calls={1, 2})
    with pytest.raises(FloatingPointError, match="VAE gradient was non-finite for 2 consecutive"):
        trainer(tmp_path, 2).fit(stop, loader(n=4))


class EmaAtStep(L.Callback):
    """The in-memory EMA once step ``step`` is fully done (at the next batch's start)."""

    def __init__(self, step: int) -> None:
        self.step, self.state = step, None

    def on_train_batch_start(self, trainer, module, *args) -> None:
        if trainer.global_step == self.step and self.state is None:
            self.state = {k: v.clone() for k, v in module.state_dict().items()
                          if k.startswith("ema.")}


def test_checkpoint_holds_the_ema_of_its_step(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    four = module(disc_start=-1)
    tr = trainer(tmp_path / "b", 4)
    at2 = EmaAtStep(2)
    every2 = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=2, save_top_k=-1)
    tr.callbacks += [at2, every2]
    tr.fit(four, loader(n=2))
    ckpt = next((tmp_path / "ckpt").glob("*step=2.ckpt"))
    saved = read_checkpoint(ckpt)["state_dict"]
    for key, value in at2.state.items():
        torch.testing.assert_close(saved[key], value, msg=key)
    resumed = module(disc_start=-1)
    trainer(tmp_path / "c", 4).fit(resumed, loader(n=2), ckpt_path=str(ckpt))
    for key, value in four.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, msg=key)
