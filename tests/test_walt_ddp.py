"""Two CPU processes under Lightning DDP: identical weights after the steps, disjoint data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from data.synthetic import write_synthetic
from tests.walt_fixtures import tiny_tokenizer_file

ROOT = Path(__file__).resolve().parents[1]


def test_ddp_two_cpu_ranks(tmp_path):
    # Two shards of four clips: each rank must get one shard.
    write_synthetic(str(tmp_path / "shapes-%06d.tar"), num_videos=8, frames=9, size=16,
                    object_size=6, samples_per_shard=4)
    tok = tiny_tokenizer_file(tmp_path / "tok.safetensors")
    bb = "--model.init_args.backbone.init_args."
    cmd = [
        sys.executable, "train.py", "fit",
        "--config=configs/walt/tiny_cpu.yaml",
        "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp",
        "--trainer.max_steps=2", "--trainer.max_time=null", "--trainer.limit_val_batches=0",
        "--trainer.enable_progress_bar=false", "--trainer.enable_checkpointing=false",
        f"--trainer.default_root_dir={tmp_path}", "--trainer.logger=false",
        "--trainer.callbacks=tests.ddp_probe.RankProbe",
        f"--trainer.callbacks.out={tmp_path / 'probe'}",
        f"--model.init_args.tokenizer={tok}",
        f"{bb}hidden_size=32", f"{bb}depth=2", f"{bb}num_heads=2",
        f"{bb}max_latent_size=[3, 2, 2]", f"{bb}spatiotemporal_window=[3, 2, 2]",
        f"--data.init_args.train_videos={tmp_path}/shapes-{{000000..000001}}.tar",
        "--data.init_args.val_videos=null", "--data.init_args.load_pixels=true",
        "--data.init_args.num_frames=9", "--data.init_args.size=16",
        "--data.init_args.batch_size=2", "--data.init_args.num_workers=0",
        "--data.init_args.resampled=false", "--data.init_args.epoch_length=null",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    r0 = torch.load(tmp_path / "probe" / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "probe" / "rank1.pt", weights_only=True)
    for name, w in r0["weights"].items():
        torch.testing.assert_close(w, r1["weights"][name], rtol=0, atol=0, msg=name)
    assert len(r0["keys"]) == len(r1["keys"]) == 4
    assert not set(r0["keys"]) & set(r1["keys"])  # disjoint
    assert len(set(r0["keys"]) | set(r1["keys"])) == 8  # together: everything
    # The weights moved: the steps really ran.
    assert any(w.abs().sum() > 0 for k, w in r0["weights"].items() if "final" in k or "head" in k)
