"""Export / load round trip, the export CLI, latent statistics and evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from data.encode import write_mp4
from tokenizer import CausalVAE, load_tokenizer, save_tokenizer
from tokenizer.evaluate import evaluate
from tokenizer.latent_stats import compute_latent_stats
from tokenizer.loading import store_latent_stats


def tiny() -> CausalVAE:
    torch.manual_seed(0)
    return CausalVAE.from_preset("tiny", latent_mean=[0.5] * 8, latent_std=[2.0] * 8).eval()


def test_safetensors_round_trip(tmp_path):
    vae = tiny()
    path = save_tokenizer(vae, tmp_path / "t.safetensors")
    with safe_open(str(path), framework="pt") as f:
        config = json.loads(f.metadata()["config"])
    assert config["latent_std"] == [2.0] * 8
    loaded = load_tokenizer(path)
    assert loaded.config == vae.config
    x = torch.rand(1, 3, 9, 16, 16) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded.decode(loaded.encode(x)), vae.decode(vae.encode(x)))
        torch.testing.assert_close(loaded.normalize(loaded.encode(x)), vae.normalize(vae.encode(x)))


@pytest.mark.parametrize("key", ["tokenizer_config", "other"])
def test_export_without_the_config_key_is_refused(tmp_path, key):
    vae = tiny()
    state = {k: v.contiguous() for k, v in vae.state_dict().items()}
    path = tmp_path / "old.safetensors"
    save_file(state, str(path), metadata={key: json.dumps(vae.config)})
    with pytest.raises(ValueError, match="no 'config' entry"):
        load_tokenizer(path)


def test_checkpoint_ema_weights_are_read_from_ema_module_only(tmp_path):
    vae = tiny()
    sd = {f"ema.{k}": v for k, v in vae.state_dict().items()}  # not common.ema.EMA's layout
    torch.save({"config": vae.config, "state_dict": sd}, tmp_path / "t.ckpt")
    with pytest.raises(ValueError, match="'ema.module.\\*' weights"):
        load_tokenizer(tmp_path / "t.ckpt")


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_tokenizer(tmp_path / "nope.safetensors")
    bad = tmp_path / "weights.bin"
    bad.write_bytes(b"x")
    with pytest.raises(ValueError, match="expected .safetensors or .ckpt"):
        load_tokenizer(bad)


def write_folder(folder, n: int = 2) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        base = rng.integers(0, 255, size=(1, 8, 8, 3), dtype=np.uint8)
        frames = np.repeat(np.repeat(np.repeat(base, 9, axis=0), 4, axis=1), 4, axis=2)
        write_mp4(frames, folder / f"clip{i}.mp4", fps=8)


def test_latent_stats_are_stored_and_normalize(tmp_path):
    write_folder(tmp_path / "media")
    vae = tiny()
    src = save_tokenizer(vae, tmp_path / "t.safetensors")
    mean, std, seen = compute_latent_stats(
        vae, str(tmp_path / "media"), num_frames=9, size=32, max_samples=8, images=False
    )
    assert seen == 2 and len(mean) == len(std) == 8 and all(s > 0 for s in std)
    out = store_latent_stats(src, mean, std, tmp_path / "stats.safetensors")
    loaded = load_tokenizer(out)
    assert loaded.config["latent_mean"] == pytest.approx(mean)
    from tokenizer.clips import folder_clips

    zs = torch.cat(
        [
            loaded.normalize(loaded.encode(x))
            for _, x in folder_clips(tmp_path / "media", num_frames=9, size=32, images=False)
        ]
    )
    per_channel = zs.transpose(0, 1).flatten(1)
    torch.testing.assert_close(per_channel.mean(1), torch.zeros(8), atol=1e-4, rtol=0)
    torch.testing.assert_close(per_channel.std(1, unbiased=False), torch.ones(8), atol=1e-3, rtol=0)


def test_evaluate_folder_and_export_cli(tmp_path):
    write_folder(tmp_path / "media")
    vae = tiny()
    result = evaluate(
        vae,
        str(tmp_path / "media"),
        num_frames=9,
        size=32,
        max_clips=5,
        out_dir=str(tmp_path / "out"),
    )
    assert len(result["clips"]) == 2 and np.isfinite(result["mean_psnr"])
    assert result["encode_s_per_frame"] > 0 and len(list((tmp_path / "out").glob("*.mp4"))) == 2
    from tokenizer.export import main

    main([str(save_tokenizer(vae, tmp_path / "a.safetensors")), str(tmp_path / "b.safetensors")])
    assert load_tokenizer(tmp_path / "b.safetensors").config == vae.config


def _disk_full(obj, f, *args, **kwargs):
    """A save that writes part of the file, then fails like a full disk."""
    with open(f, "wb") as out:
        out.write(b"partial")
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("kind", ["ckpt", "safetensors"])
def test_interrupted_latent_stats_write_keeps_the_original(kind, tmp_path, monkeypatch):
    import tokenizer.loading
    from tokenizer.latent_stats import main as latent_stats_main

    write_folder(tmp_path / "media")
    vae = tiny()
    if kind == "ckpt":
        path = tmp_path / "tok.ckpt"
        state = {f"ema.module.{k}": v for k, v in vae.state_dict().items()}
        torch.save({"state_dict": state, "config": vae.config}, path)
        monkeypatch.setattr(torch, "save", _disk_full)
    else:
        path = save_tokenizer(vae, tmp_path / "tok.safetensors")
        monkeypatch.setattr(tokenizer.loading, "save_file", _disk_full)
    original = path.read_bytes()
    with pytest.raises(OSError, match="No space left"):  # in place, the default
        latent_stats_main([str(path), str(tmp_path / "media"), "--num-frames", "9", "--size",
                           "32", "--max-samples", "2"])
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["media", path.name]  # no temp file


@pytest.mark.parametrize("batch_size", [3, 8])
def test_latent_stats_batched_equal_one_at_a_time(tmp_path, batch_size):
    from data.synthetic import write_synthetic

    write_synthetic(str(tmp_path / "s-%06d.tar"), num_videos=7, frames=9, size=32, seed=0)
    vae = tiny().eval()
    shards = str(tmp_path / "s-000000.tar")
    kw = dict(num_frames=9, size=32, max_samples=5, images=False)
    mean1, std1, seen1 = compute_latent_stats(vae, shards, batch_size=1, **kw)
    mean, std, seen = compute_latent_stats(vae, shards, batch_size=batch_size, **kw)
    assert seen1 == seen == 5  # max_samples holds whatever the batch size
    assert mean == pytest.approx(mean1, rel=1e-4, abs=1e-6)
    assert std == pytest.approx(std1, rel=1e-4, abs=1e-6)
