"""The shipped super-resolution configs: `fit --trainer.fast_dev_run=true` with a tiny model, the
paper's model sizes, and training from precomputed pairs without the tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from data import WebVideoDataModule
from models import WindowedDiT
from tests.test_walt_configs import _tiny_overrides, assets  # noqa: F401 (fixture)
from tokenizer import CausalVAE, load_tokenizer
from train import main as cli_main
from walt.core.generation import sampling_stream
from walt.core.hparams import max_latent_size
from walt.core.super_resolution import downsample_pixels
from walt.precompute import main as precompute_main

SR_CONFIGS = sorted(Path(__file__).resolve().parents[1].joinpath("configs", "sr").glob("*.yaml"))
# W.A.L.T Tab. 8: parameters of the SR stages, in millions.
PAPER_MILLIONS = {"sr1": 1300, "sr2": 419}


def test_every_sr_stage_is_shipped():
    assert sorted(c.stem for c in SR_CONFIGS) == ["sr1", "sr2", "tiny_cpu"]


@pytest.mark.parametrize("config", SR_CONFIGS, ids=[c.stem for c in SR_CONFIGS])
def test_fast_dev_run_of_each_sr_config(config, assets, tmp_path):  # noqa: F811
    """On the fly: each 16x16 clip is downsampled to 8x8 and both are encoded."""
    cli = cli_main(_tiny_overrides(config, assets, tmp_path))
    assert cli.trainer.state.finished and cli.trainer.global_step == 1
    assert cli.model.is_super_resolution and cli.model.size == (16, 16)
    assert cli.model.backbone.lowres_channels == cli.model.codec.latent_channels


@pytest.mark.parametrize("name", sorted(PAPER_MILLIONS))
def test_shipped_sr_configs_have_the_paper_sizes(name):
    cfg = yaml.safe_load((SR_CONFIGS[0].parent / f"{name}.yaml").read_text())
    model, data = cfg["model"]["init_args"], cfg["data"]["init_args"]
    grid = max_latent_size(data["num_frames"], data["size"])
    with torch.device("meta"):
        net = WindowedDiT(**model["backbone"]["init_args"], preset=None, max_latent_size=grid,
                          in_channels=model["latent_channels"])
    millions = sum(p.numel() for p in net.parameters()) / 1e6
    print(f"{name}: {millions:.0f}M parameters (paper: {PAPER_MILLIONS[name]}M), grid {grid}")
    assert abs(millions / PAPER_MILLIONS[name] - 1) < 0.1


def test_tiny_sr_trains_from_precomputed_pairs_without_the_tokenizer(assets, tmp_path,  # noqa: F811
                                                                    monkeypatch):
    out = tmp_path / "pairs-%06d.tar"
    precompute_main([assets["tokenizer"], str(out), "--videos", assets["shards"],
                     "--num-frames", "9", "--size", "16", "--num-workers", "0", "--device", "cpu",
                     "--lowres"])
    shard = str(tmp_path / "pairs-000000.tar")
    kw = dict(num_frames=9, size=16, batch_size=16, num_workers=0)
    pix = WebVideoDataModule(val_videos=assets["shards"], **kw)
    lat = WebVideoDataModule(val_videos=shard, load_pixels=False, **kw)
    pix.setup("validate")
    lat.setup("validate")
    vae = load_tokenizer(assets["tokenizer"])
    (a,), (b,) = list(pix.val_dataloader()), list(lat.val_dataloader())
    assert a["video"]["key"] == b["video"]["key"]
    small = downsample_pixels(a["video"]["pixels"])  # (B, C, T, 8, 8)
    torch.testing.assert_close(b["video"]["lowres_latents"], vae.encode(small))

    def refuse(*args, **kwargs):
        raise AssertionError("training from precomputed pairs ran the tokenizer's encoder")

    monkeypatch.setattr(CausalVAE, "encode", refuse)
    config = SR_CONFIGS[0].parent / "tiny_cpu.yaml"
    args = _tiny_overrides(config, assets, tmp_path) + [
        "--data.init_args.load_pixels=false",
        f"--data.init_args.train_videos={shard}",
        f"--data.init_args.val_videos={shard}",
    ]
    cli = cli_main(args)
    assert cli.trainer.state.finished and cli.trainer.global_step == 1
    # The CLI's checkpoint loads back as the same SR stage (its config rebuilds everything).
    from walt.lightning import WALTModule

    cli.trainer.save_checkpoint(tmp_path / "sr.ckpt")
    loaded = WALTModule.load_from_checkpoint(tmp_path / "sr.ckpt")
    assert loaded.is_super_resolution and loaded.super_resolution == cli.model.super_resolution
    z = loaded.generate(lowres_latents=torch.zeros(1, 8, 3, 1, 1), decode=False,
                        stream=sampling_stream(labels=torch.tensor([0])),
                        sampling=loaded.sampling.override({"num_inference_steps": 1}))
    assert z.shape == (1, 8, 3, 2, 2)
