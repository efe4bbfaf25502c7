"""Every shipped diffusion config runs `fit --trainer.fast_dev_run=true` with a tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest

from data.synthetic import write_synthetic
from tests.walt_fixtures import tiny_tokenizer_file
from train import main as cli_main

CONFIGS = sorted(Path(__file__).resolve().parents[1].joinpath("configs", "walt").glob("*.yaml"))


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("assets")
    write_synthetic(str(root / "shapes-%06d.tar"), num_videos=6, num_images=4, frames=9, size=16,
                    object_size=6, samples_per_shard=100)
    from transformers import ByT5Tokenizer, T5Config, T5EncoderModel

    t5 = T5EncoderModel(T5Config(vocab_size=384, d_model=32, d_kv=8, d_ff=64, num_layers=1,
                                 num_heads=2))
    t5.save_pretrained(root / "t5")
    ByT5Tokenizer().save_pretrained(root / "t5")
    return {
        "shards": str(root / "shapes-000000.tar"),
        "tokenizer": str(tiny_tokenizer_file(root / "tok.safetensors")),
        "t5": str(root / "t5"),
    }


def _tiny_overrides(config: Path, assets: dict, root: Path) -> list[str]:
    bb = "--model.init_args.backbone.init_args."
    args = [
        "fit",
        f"--config={config}",
        "--trainer.fast_dev_run=true",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        f"--trainer.default_root_dir={root}",
        f"--model.init_args.tokenizer={assets['tokenizer']}",
        f"{bb}hidden_size=32",
        f"{bb}depth=2",
        f"{bb}num_heads=2",
        f"{bb}spatiotemporal_window=[3, 2, 2]",
        f"--data.init_args.train_videos={assets['shards']}",
        "--data.init_args.num_frames=9",
        "--data.init_args.size=16",
        "--data.init_args.batch_size=2",
        "--data.init_args.num_workers=0",
        "--data.init_args.epoch_length=null",
        "--data.init_args.resampled=false",
        "--data.init_args.target_fps=null",
        "--data.init_args.load_pixels=true",
    ]
    text = config.read_text()
    if "val_videos" in text:
        args.append(f"--data.init_args.val_videos={assets['shards']}")
    if "train_images" in text:
        args += [f"--data.init_args.train_images={assets['shards']}",
                 "--data.init_args.image_batch_size=2"]
    if "text_encoder" in text:
        args += [f"--model.init_args.text_encoder={assets['t5']}", f"{bb}text_dim=32"]
    return args


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_fast_dev_run(config, assets, tmp_path):
    cli = cli_main(_tiny_overrides(config, assets, tmp_path))
    assert cli.trainer.state.finished
    assert cli.trainer.global_step == 1
    # The links made the backbone agree with the tokenizer and the module with the data.
    assert cli.model.backbone.in_channels == cli.model.codec.latent_channels
    assert cli.model.num_frames == 9 and cli.model.size == (16, 16)
    # ...and the data with the backbone's classes (labels outside are skipped, not an error).
    assert cli.datamodule.num_classes == cli.model.backbone.num_classes


def test_config_with_mismatched_channels_fails_clearly(assets, tmp_path):
    config = Path(__file__).resolve().parents[1] / "configs" / "walt" / "tiny_cpu.yaml"
    args = _tiny_overrides(config, assets, tmp_path) + ["--model.init_args.latent_channels=4"]
    with pytest.raises(ValueError, match="latent channels"):
        cli_main(args)


@pytest.mark.parametrize(("frames", "size", "grid"), [(9, 16, (3, 2, 2)), (5, 24, (2, 3, 3))])
def test_max_latent_size_follows_the_data(assets, tmp_path, frames, size, grid):
    from train import WaltCLI

    config = Path(__file__).resolve().parents[1] / "configs" / "walt" / "tiny_cpu.yaml"
    args = _tiny_overrides(config, assets, tmp_path)[1:]  # no subcommand: build only
    args += [f"--data.init_args.num_frames={frames}", f"--data.init_args.size={size}"]
    cli = WaltCLI(args=args, run=False, subclass_mode_model=True, subclass_mode_data=True)
    assert cli.model.backbone.pos_embed.grid == grid


def test_sampling_options_reach_the_module_from_the_config(assets, tmp_path):
    from train import WaltCLI

    config = Path(__file__).resolve().parents[1] / "configs" / "walt" / "tiny_cpu.yaml"
    args = _tiny_overrides(config, assets, tmp_path)[1:]
    key = "--model.init_args.sampling."
    args += [f"{key}guidance_schedule=cosine", f"{key}guidance_rescale=0.7",
             f"{key}guidance_min_scale=0.5", f"{key}sampler=ddpm",
             f'{key}sampler_options={{"variance": "large"}}', f"{key}frame_guidance_scale=2.0",
             f"{key}guidance_reverse=true"]
    cli = WaltCLI(args=args, run=False, subclass_mode_model=True, subclass_mode_data=True)
    s = cli.model.sampling
    assert (s.guidance_schedule, s.guidance_min_scale, s.guidance_rescale) == ("cosine", 0.5, 0.7)
    assert (s.frame_guidance_scale, s.guidance_reverse) == (2.0, True)
    assert (s.sampler, s.sampler_options) == ("ddpm", {"variance": "large"})
    assert s.guidance_scale == 2.5  # the config's, untouched
    with pytest.raises(ValueError, match="guidance_rescale"):
        WaltCLI(args=[*args, f"{key}guidance_rescale=2.0"], run=False,
                subclass_mode_model=True, subclass_mode_data=True)
