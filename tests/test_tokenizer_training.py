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


def module(**kwargs) -> TokenizerModule:
    torch.manual_seed(0)
    return TokenizerModule(**{"lr": 1e-3, "disc_start": 1, **SMALL_DISC, **kwargs})


def test_gan_steps_count_generator_steps_and_train_both(tmp_path):
    m = module(media_every=1, media_dir=str(tmp_path / "media"))
    disc_before = [p.detach().clone() for p in m.disc.parameters()]
    vae_before = [p.detach().clone() for p in m.vae.parameters()]
    tr = trainer(tmp_path, 3)
    tr.fit(m, loader())
    assert tr.global_step == 3  # the discriminator's steps do not advance global_step
    assert any(not torch.equal(a, b) for a, b in zip(disc_before, m.disc.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(vae_before, m.vae.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(vae_before, m.ema.parameters()))
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
    m = module(disc_start=-1, max_nonfinite_skips=5)
    tr = trainer(tmp_path, 2)
    tr.fit(m, loader(nan_from=2))  # batch 0 fine, batch 1 has NaN pixels
    assert int(m.nonfinite_skips) == 1
    assert all(torch.isfinite(p).all() for p in m.vae.parameters())
    stop = module(disc_start=-1, max_nonfinite_skips=1)
    with pytest.raises(RuntimeError, match="NaN/inf 2 times"):
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
        torch.testing.assert_close(vae.decode(vae.encode(x)), m.ema.decode(m.ema.encode(x)))
        raw = load_tokenizer(ckpt, use_ema=False)
        assert not torch.allclose(raw.encode(x), vae.encode(x))
    with pytest.raises(FileNotFoundError, match="not found"):
        load_tokenizer(tmp_path / "missing.ckpt")


def test_perceptual_loss_from_local_random_weights(tmp_path):
    import timm
    from safetensors.torch import save_file

    from tokenizer.perceptual import PerceptualLoss

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
