"""A shipped tiny config writes every output under ``trainer.default_root_dir``, and a resumed
run keeps its loss history (end to end through ``train.py``; the pieces are tested quickly in
test_common_training.py)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import yaml

from data.synthetic import write_synthetic
from tests.test_walt_configs import _tiny_overrides
from tests.walt_fixtures import tiny_tokenizer_file
from train import main as cli_main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("assets")
    write_synthetic(str(root / "shapes-%06d.tar"), num_videos=4, num_images=4, frames=9, size=16,
                    object_size=6, samples_per_shard=100)
    return {"shards": str(root / "shapes-000000.tar"),
            "tokenizer": str(tiny_tokenizer_file(root / "tok.safetensors"))}


def _every_2_steps(config: Path, out: Path, **sample_logger) -> Path:
    """The shipped config with checkpoints (and samples) every 2 steps, so a 2-step run saves."""
    cfg = yaml.safe_load(config.read_text())
    for cb in cfg["trainer"]["callbacks"]:
        if cb["class_path"].endswith("ModelCheckpoint"):
            cb["init_args"]["every_n_train_steps"] = 2
        if cb["class_path"].endswith("SampleLogger"):
            cb["init_args"].update(sample_logger)
        if cb["class_path"].endswith("GenerationQuality"):
            cb["init_args"]["every_n_steps"] = 0  # scores the quickstart's classes, not these
    out.write_text(yaml.safe_dump(cfg))
    return out


def _metrics_steps(path: Path, key: str) -> list[int]:
    with open(path, newline="") as f:
        return sorted(int(r["step"]) for r in csv.DictReader(f) if r.get(key))


@pytest.mark.slow  # two CLI runs with sampling: tens of seconds on a small CPU
def test_walt_outputs_follow_default_root_dir_and_resume_keeps_metrics(
    assets, tmp_path, monkeypatch
):
    config = _every_2_steps(CONFIGS / "walt" / "tiny_cpu.yaml", tmp_path / "walt.yaml",
                            every_n_steps=2, num_samples=2,
                            sampling={"num_inference_steps": 2})
    cwd, root = tmp_path / "cwd", tmp_path / "x"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    args = [a for a in _tiny_overrides(config, assets, root) if "fast_dev_run" not in a]
    args += ["--trainer.max_time=null", "--trainer.limit_val_batches=0",
             "--trainer.log_every_n_steps=1", "--trainer.enable_progress_bar=false"]
    cli_main(args + ["--trainer.max_steps=2"])
    cli_main(args + ["--trainer.max_steps=4", "--ckpt_path=last"])
    assert list(cwd.iterdir()) == []
    for name in ("checkpoints/last.ckpt", "logs/config.yaml",
                 "logs/samples/step_0000002/contact_sheet.png"):
        assert (root / name).is_file(), name
    assert torch.load(root / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4
    assert _metrics_steps(root / "logs" / "metrics.csv", "train/loss") == [0, 1, 2, 3]


@pytest.mark.slow  # a CLI run of the tokenizer
def test_tokenizer_outputs_follow_default_root_dir(assets, tmp_path, monkeypatch):
    config = _every_2_steps(CONFIGS / "tokenizer" / "tiny_cpu.yaml", tmp_path / "tok.yaml")
    cwd, root = tmp_path / "cwd", tmp_path / "x"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    d = "--data.init_args."
    cli_main(["fit", f"--config={config}", f"--trainer.default_root_dir={root}",
              "--trainer.max_steps=2", "--trainer.max_time=null", "--trainer.limit_val_batches=0",
              "--model.init_args.media_every=1", f"{d}train_videos={assets['shards']}",
              f"{d}train_images={assets['shards']}", f"{d}val_videos={assets['shards']}",
              f"{d}num_frames=9", f"{d}size=16", f"{d}batch_size=2", f"{d}image_batch_size=2",
              f"{d}num_workers=0"])
    assert list(cwd.iterdir()) == []
    for name in ("checkpoints/last.ckpt", "tokenizer.safetensors",
                 "media/train_video_step0000000.mp4"):
        assert (root / name).is_file(), name
    assert list((root / "tb").rglob("events.out.tfevents.*"))
