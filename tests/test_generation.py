"""Generation in every mode, end to end from the command line, with tiny models made here."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from data.encode import to_uint8_frames, write_mp4
from tests.test_walt_configs import CONFIGS, _tiny_overrides, assets  # noqa: F401 (fixture)
from train import main as cli_main
from walt.core.generation import sampling_stream
from walt.core.loading import load_walt_checkpoint
from walt.generate import main as generate_main
from walt.pipelines.extend import extended_length

TINY = next(c for c in CONFIGS if c.stem == "tiny_cpu")


def load_module(path):
    return load_walt_checkpoint(path).eval()
BB = "--model.init_args.backbone.init_args."


def _fit(assets, root, extra):  # noqa: F811 (fixture)
    args = [a for a in _tiny_overrides(TINY, assets, root) if "fast_dev_run" not in a]
    args += ["--trainer.max_steps=1", "--trainer.max_time=null", "--trainer.limit_val_batches=0",
             "--trainer.callbacks=[]", "--trainer.logger=false",
             "--trainer.enable_checkpointing=false", "--model.init_args.sampling.num_inference_steps=2",
             *extra]
    cli = cli_main(args)
    ckpt = root / "model.ckpt"
    cli.trainer.save_checkpoint(ckpt)
    return ckpt


@pytest.fixture(scope="module")
def fps_ckpt(assets, tmp_path_factory):  # noqa: F811
    """Class-, frame- and fps-conditioned tiny model, trained with interpolation masks."""
    return _fit(assets, tmp_path_factory.mktemp("fps"), [
        f"{BB}num_extra_cond=1", "--model.init_args.conditioning.use_fps=true",
        "--model.init_args.conditioning.p_interpolate=0.5",
    ])


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    g = torch.Generator().manual_seed(3)
    clip = torch.rand(3, 9, 16, 16, generator=g) * 2 - 1
    frames = to_uint8_frames(clip)
    Image.fromarray(frames[0]).save(root / "image.png")
    write_mp4(frames, root / "video.mp4", fps=8)
    return {"image": str(root / "image.png"), "video": str(root / "video.mp4")}


def _frames(path):
    with av.open(str(path)) as c:
        rate = float(c.streams.video[0].average_rate)
        return sum(1 for _ in c.decode(video=0)), rate


MODES = {
    "sample": [],
    "image": ["--image", "{image}"],
    "predict": ["--video", "{video}"],
    "interpolate": ["--video", "{video}", "--keyframes", "0,-1"],
    "extend": ["--num-chunks", "3", "--image", "{image}"],
}


@pytest.mark.parametrize("mode", list(MODES))
def test_every_mode_from_the_command_line(mode, fps_ckpt, media, tmp_path):
    extra = [a.format(**media) for a in MODES[mode]]
    out = generate_main([str(fps_ckpt), "--out", str(tmp_path), "--mode", mode, "--labels", "0,2",
                         "--fps", "12", "--num-inference-steps", "2", "--png-frames",
                         "--no-progress", *extra])
    frames = extended_length(9, 3) if mode == "extend" else 9
    for i in range(2):
        assert _frames(out / f"sample_{i:03d}.mp4") == (frames, 12.0)
        assert (out / f"sample_{i:03d}.gif").stat().st_size > 0
        assert len(list((out / f"sample_{i:03d}").glob("frame_*.png"))) == frames
    assert (out / "contact_sheet.png").stat().st_size > 0
    settings = json.loads((out / "settings.json").read_text())
    assert settings["mode"] == mode and settings["fps"] == 12.0 and settings["labels"] == [0, 2]
    sampling = settings["sampling"]
    assert (sampling["num_inference_steps"], sampling["sampler"], settings["size"]) == (2, "ddim",
                                                                                        [16, 16])


def test_long_video_scores_per_chunk_and_drift(fps_ckpt, assets, tmp_path):  # noqa: F811
    from walt.evaluate.__main__ import main as evaluate_main
    from walt.evaluate_synthetic import evaluate_chunks

    out = generate_main([str(fps_ckpt), "--out", str(tmp_path), "--mode", "extend", "--labels",
                         "0,1", "--num-chunks", "3", "--num-inference-steps", "1", "--no-progress"])
    scores = evaluate_chunks(out, assets["shards"], chunk_frames=4, seam_overlap=5)
    assert [(c["start"], c["stop"], c["count"]) for c in scores] == [(0, 9, 2), (9, 13, 2),
                                                                     (13, 17, 2)]
    assert json.loads((out / "chunk_score.json").read_text()) == scores
    evaluate_main(["drift", str(out), "--chunk-frames", "4", "--seam-overlap", "5", "--json",
                   str(tmp_path / "drift.json")])
    report = json.loads((tmp_path / "drift.json").read_text())
    assert len(report["videos"]) == 2
    assert all(len(video["chunks"]) == 3 for video in report["videos"].values())


def test_three_chunks_give_the_documented_length():
    assert extended_length(17, 3) == 17 + 2 * 12 == 41
    assert extended_length(9, 1) == 9
    with pytest.raises(ValueError, match="num_frames"):
        extended_length(5, 2)


def test_regenerating_from_settings_gives_the_same_pixels(fps_ckpt, media, tmp_path):
    first = generate_main([str(fps_ckpt), "--out", str(tmp_path / "a"), "--labels", "1",
                           "--mode", "predict", "--video", media["video"], "--seed", "5",
                           "--no-progress"])
    again = generate_main(["--from-settings", str(first / "settings.json"), "--out",
                           str(tmp_path / "b"), "--no-progress"])
    a = torch.load(first / "samples.pt", weights_only=True)["pixels"]
    b = torch.load(again / "samples.pt", weights_only=True)["pixels"]
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    other = generate_main([str(fps_ckpt), "--out", str(tmp_path / "c"), "--labels", "1",
                           "--mode", "predict", "--video", media["video"], "--seed", "6",
                           "--no-progress"])
    assert not torch.equal(a, torch.load(other / "samples.pt", weights_only=True)["pixels"])


def test_conditioning_frames_are_kept_in_latent_space(fps_ckpt, media):
    from walt.pipelines.inputs import load_image, load_video

    module = load_module(fps_ckpt)
    video = load_video(media["video"], num_frames=9, size=(16, 16))  # (1, 3, 9, 16, 16)
    image = load_image(media["image"], size=(16, 16))  # (1, 3, 1, 16, 16)
    common = dict(stream=sampling_stream(labels=torch.tensor([0]), fps=8.0), decode=False,
                  sampling=module.sampling.override({"num_inference_steps": 2}),
                  generator=torch.Generator().manual_seed(0))
    z = module.generate(cond_pixels=image, **common)  # one image, as given
    torch.testing.assert_close(z[:, :, :1], module.codec.encode(image))
    z = module.generate(cond_pixels=video[:, :, :5], **common)  # prediction: 2 latent frames
    torch.testing.assert_close(z[:, :, :2], module.codec.encode(video[:, :, :5]))
    mask = torch.tensor([[1.0, 0.0, 1.0]])  # interpolation: first and last latent frames
    z = module.generate(cond_pixels=video, cond_mask=mask, **common)
    known = module.codec.encode(video)
    torch.testing.assert_close(z[:, :, [0, 2]], known[:, :, [0, 2]])
    assert not torch.allclose(z[:, :, 1], known[:, :, 1])


def test_fps_reaches_the_network(fps_ckpt, tmp_path, monkeypatch):
    module = load_module(fps_ckpt)
    seen = []
    net = module.ema.module
    forward = net.forward

    def spy(*args, **kwargs):
        seen.append(kwargs["extra_cond"])
        return forward(*args, **kwargs)

    monkeypatch.setattr(net, "forward", spy)
    module.generate(stream=sampling_stream(labels=torch.tensor([0, 1]), fps=12.0))
    assert seen and all(torch.equal(e, torch.full((2, 1), 12.0)) for e in seen)
    with pytest.raises(KeyError, match="fps"):
        module.generate(stream=sampling_stream(labels=torch.tensor([0])))


def test_unlabelled_predict_uses_the_null_label(fps_ckpt, monkeypatch):
    module = load_module(fps_ckpt)
    seen = []
    net = module.ema.module
    forward = net.forward

    def spy(*args, **kwargs):
        seen.append((kwargs["class_labels"].clone(), kwargs["drop_class"].clone()))
        return forward(*args, **kwargs)

    monkeypatch.setattr(net, "forward", spy)
    stream = {"label": torch.tensor([2, -1]), "fps": torch.full((2,), 8.0), "key": ["a", "b"],
              "caption": ["", ""]}
    out = module.predict_step({"video": stream}, 0)
    assert out["video"]["pixels"].shape == (2, 3, 9, 16, 16)
    labels, drop = seen[0]
    assert labels[0] == 2 and drop.tolist() == [False, True]


@pytest.fixture(scope="module")
def text_ckpt(assets, tmp_path_factory):  # noqa: F811
    return _fit(assets, tmp_path_factory.mktemp("t2v"), [
        f"{BB}num_classes=0", f"{BB}text_dim=32", f"--model.init_args.text_encoder={assets['t5']}"])


@pytest.mark.parametrize("suffix", [".safetensors", ".npy"])
def test_text_mode_reads_precomputed_embeddings(suffix, text_ckpt, tmp_path):
    root, ckpt = tmp_path, text_ckpt
    emb = torch.randn(2, 6, 32)
    path = root / f"prompts{suffix}"
    if suffix == ".npy":
        np.save(path, emb.numpy())
    else:
        save_file({"text_emb": emb, "text_mask": torch.ones(2, 6, dtype=torch.uint8)}, path)
    out = generate_main([str(ckpt), "--out", str(root / "out"), "--text-embeddings", str(path),
                         "--num-inference-steps", "2", "--no-progress"])
    assert torch.load(out / "samples.pt", weights_only=True)["pixels"].shape == (2, 3, 9, 16, 16)


def test_other_sizes_and_lengths(fps_ckpt, tmp_path):
    out = generate_main([str(fps_ckpt), "--out", str(tmp_path), "--labels", "1", "--size",
                         "24x32", "--num-frames", "13", "--num-inference-steps", "1",
                         "--no-progress"])
    assert torch.load(out / "samples.pt", weights_only=True)["pixels"].shape == (1, 3, 13, 24, 32)
    assert json.loads((out / "settings.json").read_text())["size"] == [24, 32]
