"""End to end through the CLI: fit, checkpoint, reload safely, generate, export, score."""

from __future__ import annotations

import json

import pytest
import torch

from tests.test_walt_configs import CONFIGS, _tiny_overrides, assets  # noqa: F401 (fixture)
from train import main as cli_main
from walt.core.loading import load_walt_checkpoint
from walt.evaluate_synthetic import evaluate
from walt.export import export_checkpoint, load_backbone, read_config
from walt.generate import main as generate_main

TINY = next(c for c in CONFIGS if c.stem == "tiny_cpu")


@pytest.fixture(scope="module")
def trained(assets, tmp_path_factory):  # noqa: F811 (fixture)
    root = tmp_path_factory.mktemp("fit")
    args = [a for a in _tiny_overrides(TINY, assets, root) if "fast_dev_run" not in a]
    args += ["--trainer.max_steps=2", "--trainer.max_time=null", "--trainer.limit_val_batches=0",
             "--trainer.callbacks=[]", "--trainer.logger=false",
             "--trainer.enable_checkpointing=false"]
    cli = cli_main(args)
    ckpt = root / "model.ckpt"
    cli.trainer.save_checkpoint(ckpt)
    return {"ckpt": ckpt, "module": cli.model, "root": root}


def test_checkpoint_reloads_with_weights_only(trained):
    module = load_walt_checkpoint(trained["ckpt"])
    for (name, a), b in zip(trained["module"].ema.state_dict().items(),
                            module.ema.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_walt_checkpoint(trained["root"] / "missing.ckpt")


def test_generate_cli_writes_media_and_scores(trained, assets, tmp_path):  # noqa: F811
    out = generate_main([str(trained["ckpt"]), "--out", str(tmp_path), "--labels", "0,1,2",
                         "--num-inference-steps", "2"])
    for name in ("sample_000.mp4", "sample_002.gif", "contact_sheet.png", "samples.pt"):
        assert (out / name).stat().st_size > 0
    pixels = torch.load(out / "samples.pt", weights_only=True)["pixels"]
    assert pixels.shape == (3, 3, 9, 16, 16)
    score = evaluate(out, assets["shards"])
    assert set(score) >= {"shape", "color", "direction", "joint"}
    assert json.loads((out / "score.json").read_text()) == score


def test_generate_flags_reach_the_sampler(trained, tmp_path, monkeypatch):
    import walt.core.generation as generation

    seen = {}

    def fake_sample(denoiser, sampler, shape, *, guidance, **kwargs):
        seen.update(sampler=sampler, guidance=guidance)
        return torch.zeros(shape)

    monkeypatch.setattr(generation, "sample", fake_sample)
    generate_main([str(trained["ckpt"]), "--out", str(tmp_path), "--labels", "0",
                   "--sampler", "ddim", "--sampler-options", '{"eta": 0.5}',
                   "--num-inference-steps", "3", "--guidance-scale", "3",
                   "--guidance-schedule", "linear", "--guidance-min-scale", "1.5",
                   "--guidance-rescale", "0.7", "--guidance-reverse",
                   "--frame-guidance-scale", "1.5"])
    sampler, guidance = seen["sampler"], seen["guidance"]
    assert (type(sampler).__name__, sampler.eta, sampler.num_inference_steps) == ("DDIMSampler", 0.5, 3)
    assert (guidance.guidance_scale, guidance.guidance_schedule) == (3.0, "linear")
    assert (guidance.guidance_min_scale, guidance.guidance_rescale) == (1.5, 0.7)
    assert (guidance.guidance_reverse, guidance.frame_guidance_scale) == (True, 1.5)
    module = load_walt_checkpoint(trained["ckpt"])
    with pytest.raises(ValueError, match="bogus"):
        module.sampling.override({"sampler_options": {"bogus": 1}})


def test_export_roundtrip(trained, tmp_path):
    path = export_checkpoint(trained["ckpt"], tmp_path / "walt.safetensors")
    net = load_backbone(path)
    ema = trained["module"].ema.module
    x, t = torch.randn(2, 8, 3, 2, 2), torch.tensor([10.0, 500.0])
    labels = torch.tensor([0, 1])
    torch.testing.assert_close(net(x, t, class_labels=labels), ema(x, t, class_labels=labels))
    assert read_config(path)["backbone"]["class_path"] == "models.WindowedDiT"


@pytest.mark.parametrize("subcommand", ["validate", "test", "predict"])
def test_other_subcommands(subcommand, trained, assets, tmp_path):  # noqa: F811
    args = _tiny_overrides(TINY, assets, tmp_path)
    args[0] = subcommand
    args = [a for a in args if "fast_dev_run" not in a]
    args += [f"--ckpt_path={trained['ckpt']}", "--trainer.limit_val_batches=1",
             "--trainer.limit_test_batches=1", "--trainer.limit_predict_batches=1",
             "--trainer.logger=false", "--trainer.callbacks=[]",
             "--trainer.enable_checkpointing=false", "--model.init_args.sampling.num_inference_steps=2"]
    cli = cli_main(args)
    assert cli.trainer.state.finished
    if subcommand == "predict":
        out = cli.trainer.predict_loop.predictions[0]["video"]
        assert out["pixels"].shape == (2, 3, 9, 16, 16) and len(out["key"]) == 2
    else:
        assert f"{'val' if subcommand == 'validate' else 'test'}/loss_video" in cli.trainer.callback_metrics
