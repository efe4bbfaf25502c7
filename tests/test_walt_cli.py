"""End to end through the CLI: fit, checkpoint, reload safely, generate, export, score."""

from __future__ import annotations

import json
import os
import shutil
import stat

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.test_walt_configs import CONFIGS, _tiny_overrides, assets  # noqa: F401 (fixture)
from train import main as cli_main
from walt.core.loading import load_walt_checkpoint, load_walt_module
from walt.core.model_folder import BACKBONE_FILE, CONFIG_FILE, TOKENIZER_FILE
from walt.evaluate_synthetic import evaluate
from walt.export import export_checkpoint, load_backbone, read_config
from walt.export import main as export_main
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


# ---------------------------------------------------------------------------- a model that travels
def _pixels(out) -> torch.Tensor:
    return torch.load(out / "samples.pt", weights_only=True)["pixels"]


def test_model_folder_copied_alone_generates_the_checkpoints_pixels(trained, tmp_path,
                                                                    monkeypatch):
    folder = export_checkpoint(trained["ckpt"], tmp_path / "made" / "model")
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [BACKBONE_FILE, TOKENIZER_FILE, CONFIG_FILE])
    umask = os.umask(0)
    os.umask(umask)
    modes = {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
    assert modes == {0o666 & ~umask}  # readable by whoever the umask lets read any new file
    moved = tmp_path / "elsewhere" / "model"
    shutil.copytree(folder, moved)
    shutil.rmtree(tmp_path / "made")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    flags = ["--labels", "0,2", "--num-inference-steps", "2", "--seed", "3", "--no-progress"]
    ref = generate_main([str(trained["ckpt"]), "--out", str(tmp_path / "a"), *flags])
    out = generate_main([str(moved), "--out", str(tmp_path / "b"), *flags])
    assert torch.equal(_pixels(ref), _pixels(out))
    module = load_walt_module(moved)
    assert module.hparams["tokenizer"] == str(moved / TOKENIZER_FILE)
    assert list(cwd.iterdir()) == []


def test_checkpoint_finds_its_tokenizer_next_to_itself(trained, tmp_path, monkeypatch):
    state = torch.load(trained["ckpt"], weights_only=True)
    recorded = "outputs/qs/tokenizer/tokenizer.safetensors"  # relative to training's cwd
    state["hyper_parameters"]["tokenizer"] = recorded
    run = tmp_path / "copied" / "qs"  # the run's folder, copied to another machine
    (run / "walt" / "checkpoints").mkdir(parents=True)
    (run / "tokenizer").mkdir()
    shutil.copy(trained["module"].hparams["tokenizer"], run / "tokenizer" / "tokenizer.safetensors")
    ckpt = run / "walt" / "checkpoints" / "last.ckpt"
    torch.save(state, ckpt)
    monkeypatch.chdir(tmp_path)
    with pytest.warns(UserWarning, match="using .*copied/qs/tokenizer/tokenizer.safetensors"):
        module = load_walt_module(ckpt)
    assert module.hparams["tokenizer"] == str(run / "tokenizer" / "tokenizer.safetensors")
    (run / "tokenizer" / "tokenizer.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="(?s)tried:.*copied/qs/tokenizer/tokenizer"):
        load_walt_module(ckpt)


@pytest.mark.parametrize("out", ["self", "other.ckpt", "other.safetensors", "run_folder"])
def test_export_never_replaces_a_checkpoint(trained, tmp_path, out):
    ckpt = tmp_path / "model.ckpt"
    shutil.copy(trained["ckpt"], ckpt)
    target = ckpt if out == "self" else tmp_path / out
    if out == "run_folder":  # a folder that is not an earlier export (e.g. a sharded checkpoint)
        target.mkdir()
        shutil.copy(trained["ckpt"], target / "meta.pt")
    elif out != "self":
        shutil.copy(trained["ckpt"], target)  # another checkpoint, whatever its name
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(SystemExit, match="refusing"):
        export_main([str(ckpt), str(target)])
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_export_replaces_an_earlier_export(trained, tmp_path):
    for _ in range(2):
        export_checkpoint(trained["ckpt"], tmp_path / "model")
        export_checkpoint(trained["ckpt"], tmp_path / "walt.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "walt.safetensors"]


def test_oversized_config_is_refused_before_allocation(trained, tmp_path):
    path = export_checkpoint(trained["ckpt"], tmp_path / "walt.safetensors")
    weights = load_file(str(path))
    config = read_config(path)
    config["backbone"]["init_args"]["hidden_size"] = 2**20  # ~10^13 parameters if built
    save_file(weights, str(path), metadata={"config": json.dumps(config)})
    with pytest.raises(ValueError, match="does not match the stored weights"):
        load_backbone(path)
    folder = export_checkpoint(trained["ckpt"], tmp_path / "model")
    saved = json.loads((folder / CONFIG_FILE).read_text())
    saved["hyper_parameters"]["backbone"]["init_args"]["hidden_size"] = 2**20
    (folder / CONFIG_FILE).write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="nothing was built"):
        load_walt_module(folder)
