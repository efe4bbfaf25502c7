"""Every shipped U-Net config runs `fit --trainer.fast_dev_run=true` with a tiny model, and its
checkpoint generates clips through `python -m walt.generate`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from data.synthetic import write_synthetic
from tests.walt_fixtures import tiny_tokenizer_file
from train import main as cli_main
from walt.generate import main as generate_main

CONFIGS = sorted(Path(__file__).resolve().parents[1].joinpath("configs", "unet").glob("*.yaml"))


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("unet_assets")
    write_synthetic(str(root / "shapes-%06d.tar"), num_videos=4, num_images=4, frames=9, size=16,
                    object_size=6, samples_per_shard=100)
    return {
        "shards": str(root / "shapes-000000.tar"),
        "tokenizer": str(tiny_tokenizer_file(root / "tok.safetensors")),
    }


def _tiny_overrides(config: Path, assets: dict, root: Path) -> list[str]:
    bb = "--model.init_args.backbone.init_args."
    text = config.read_text()
    args = [
        "fit",
        f"--config={config}",
        "--trainer.fast_dev_run=true",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        "--trainer.precision=32-true",
        f"--trainer.logger.init_args.save_dir={root}",
        f"--trainer.default_root_dir={root}",
        f"{bb}dim=8",
        f"{bb}dim_mult=[1, 2]",
        f"{bb}num_res_blocks=1",
        f"{bb}attn_levels=[false, true]",
        f"{bb}attn_head_dim=8",
        f"{bb}groups=4",
        f"{bb}max_frames=9",
        f"--data.init_args.train_videos={assets['shards']}",
        f"--data.init_args.val_videos={assets['shards']}",
        "--data.init_args.num_frames=9",
        "--data.init_args.size=16",
        "--data.init_args.batch_size=2",
        "--data.init_args.num_workers=0",
        "--data.init_args.epoch_length=null",
        "--data.init_args.resampled=false",
        "--data.init_args.target_fps=null",
        "--data.init_args.load_pixels=true",
        "--model.init_args.sampling.num_inference_steps=2",
    ]
    if "tokenizer: pixels" not in text:
        args.append(f"--model.init_args.tokenizer={assets['tokenizer']}")
    if "SpaceTimeUnet" in text:
        args.append(f"{bb}temporal_compression=[true, false]")
    if "train_images" in text:
        args += [f"--data.init_args.train_images={assets['shards']}",
                 "--data.init_args.image_batch_size=2"]
    return args


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_fast_dev_run_and_generate(config, assets, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the configs' relative output folders land under tmp_path
    cli = cli_main(_tiny_overrides(config, assets, tmp_path))
    assert cli.trainer.state.finished and cli.trainer.global_step == 1
    pixel_space = "_pixel" in config.stem
    assert cli.model.codec.latent_channels == (3 if pixel_space else 8)
    assert cli.model.backbone.in_channels == cli.model.codec.latent_channels
    ckpt = tmp_path / "unet.ckpt"
    cli.trainer.save_checkpoint(ckpt)
    out = generate_main([str(ckpt), "--out", str(tmp_path / "samples"), "--labels", "0,1",
                         "--num-inference-steps", "2"])
    pixels = torch.load(out / "samples.pt", weights_only=True)
    pixels = pixels["pixels"] if isinstance(pixels, dict) else pixels
    assert pixels.shape == (2, 3, 9, 16, 16)
    assert torch.isfinite(pixels).all() and pixels.abs().max() <= 1.0
