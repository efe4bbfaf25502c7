"""Two nodes of one process each, simulated on localhost with two torchrun launches.

Each "node" is its own ``torchrun --nnodes 2 --node_rank {0,1} --master_addr 127.0.0.1`` that
runs ``train.py fit`` with ``configs/strategy/ddp.yaml`` and ``--trainer.num_nodes=2``, exactly
as on a cluster (docs/scaling.md); Lightning picks the ranks up from torchrun's environment.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from data.synthetic import write_synthetic
from tests.walt_fixtures import tiny_tokenizer_file

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # two processes that each start torchrun and Lightning: ~40-60 s on 2 cores
def test_two_nodes_on_localhost(tmp_path):
    write_synthetic(str(tmp_path / "shapes-%06d.tar"), num_videos=8, frames=9, size=16,
                    object_size=6, samples_per_shard=4)
    tok = tiny_tokenizer_file(tmp_path / "tok.safetensors")
    port = _free_port()
    bb = "--model.init_args.backbone.init_args."
    train = [
        "train.py", "fit",
        "--config=configs/walt/tiny_cpu.yaml", "--config=configs/strategy/ddp.yaml",
        "--trainer.accelerator=cpu", "--trainer.num_nodes=2", "--trainer.devices=1",
        "--trainer.max_steps=2", "--trainer.max_time=null", "--trainer.limit_val_batches=0",
        "--trainer.enable_progress_bar=false", "--trainer.enable_checkpointing=false",
        f"--trainer.default_root_dir={tmp_path}", "--trainer.logger=false",
        "--trainer.callbacks=tests.ddp_probe.RankProbe",
        f"--trainer.callbacks.out={tmp_path / 'probe'}",
        f"--model.init_args.tokenizer={tok}",
        f"{bb}hidden_size=32", f"{bb}depth=2", f"{bb}num_heads=2",
        f"{bb}spatiotemporal_window=[3, 2, 2]",
        f"--data.init_args.train_videos={tmp_path}/shapes-{{000000..000001}}.tar",
        "--data.init_args.val_videos=null", "--data.init_args.load_pixels=true",
        "--data.init_args.num_frames=9", "--data.init_args.size=16",
        "--data.init_args.batch_size=2", "--data.init_args.num_workers=0",
        "--data.init_args.resampled=false", "--data.init_args.epoch_length=null",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    nodes = [
        subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node_rank={rank}",
             "--nproc_per_node=1", "--master_addr=127.0.0.1", f"--master_port={port}", *train],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for rank in (0, 1)
    ]
    try:
        logs = [node.communicate(timeout=300)[0] for node in nodes]
    finally:
        for node in nodes:
            node.kill()  # only if still running (bounded time); a no-op otherwise
    for node, log in zip(nodes, logs, strict=True):
        assert node.returncode == 0, log[-4000:]
    r0 = torch.load(tmp_path / "probe" / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "probe" / "rank1.pt", weights_only=True)
    for name, w in r0["weights"].items():
        torch.testing.assert_close(w, r1["weights"][name], rtol=0, atol=0, msg=name)
    assert len(r0["keys"]) == len(r1["keys"]) == 4
    assert not set(r0["keys"]) & set(r1["keys"])  # disjoint across nodes
    assert len(set(r0["keys"]) | set(r1["keys"])) == 8  # together: everything
    assert any(w.abs().sum() > 0 for k, w in r0["weights"].items() if "final" in k or "head" in k)
