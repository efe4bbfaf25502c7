"""On resume the checkpoint restores the model, never paths: the run's config and command line
decide where it writes (train.py, walt.core.hparams.resume_hparams)."""

from __future__ import annotations

from pathlib import Path

import torch

from data.synthetic import write_synthetic
from train import main as cli_main
from walt.core.hparams import RUN_PATHS, resume_hparams

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tokenizer" / "tiny_cpu.yaml"


def _fit(shards: str, root: Path, *extra: str):
    d = "--data.init_args."
    return cli_main([
        "fit", f"--config={CONFIG}", f"--trainer.default_root_dir={root}",
        "--trainer.max_time=null", "--trainer.limit_val_batches=0", "--trainer.logger=false",
        "--trainer.callbacks=[]", "--trainer.enable_checkpointing=false",
        "--trainer.precision=32-true", "--model.init_args.media_every=1",
        f"{d}train_videos={shards}", f"{d}train_images={shards}", f"{d}val_videos={shards}",
        f"{d}num_frames=9", f"{d}size=16", f"{d}batch_size=2", f"{d}image_batch_size=2",
        f"{d}num_workers=0", *extra])


def test_resume_writes_where_the_command_line_says_never_where_the_checkpoint_says(
    tmp_path, recwarn
):
    write_synthetic(str(tmp_path / "shapes-%06d.tar"), num_videos=4, num_images=4, frames=9,
                    size=16, object_size=6, samples_per_shard=100)
    shards = str(tmp_path / "shapes-000000.tar")
    cli = _fit(shards, tmp_path / "first", "--trainer.max_steps=1")
    # A checkpoint whose hyperparameters name someone else's files as its outputs.
    victim, victim_media = tmp_path / "victim.safetensors", tmp_path / "victim_media"
    victim.write_bytes(b"precious")
    ckpt = tmp_path / "that.ckpt"
    cli.trainer.save_checkpoint(ckpt)
    state = torch.load(ckpt, weights_only=True)
    state["hyper_parameters"].update(export_path=str(victim), media_dir=str(victim_media))
    torch.save(state, ckpt)

    root = tmp_path / "run"
    _fit(shards, root, "--trainer.max_steps=2", f"--ckpt_path={ckpt}",
         "--model.init_args.export_path=mine.safetensors", "--model.init_args.media_dir=mine_media")
    assert victim.read_bytes() == b"precious" and not victim_media.exists()
    assert (root / "mine.safetensors").is_file()
    assert any((root / "mine_media").iterdir())
    kept = "the config's paths are kept for ['export_path', 'media_dir']"
    assert any(kept in str(w.message) for w in recwarn)


def test_resume_hparams_restore_the_model_and_name_every_difference():
    saved = {"preset": "tiny", "ema_decay": 0.9, "export_path": "/elsewhere/x.safetensors",
             "media_dir": "m", "tokenizer": "/their/tok.safetensors"}
    current = {"preset": "tiny", "ema_decay": 0.99, "export_path": "mine.safetensors",
               "media_dir": "m", "tokenizer": "/my/tok.safetensors"}
    merged, replaced, kept = resume_hparams(saved, current)
    assert merged == {"preset": "tiny", "ema_decay": 0.9}
    assert replaced == ["ema_decay"] and kept == ["export_path", "tokenizer"]
    assert not set(merged) & set(RUN_PATHS)
