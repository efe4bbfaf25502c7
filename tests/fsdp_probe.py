"""A tiny W.A.L.T fit under ``FSDP2Strategy``, run by the FSDP2 test in 2 processes (torchrun).

    python -m torch.distributed.run --nproc_per_node 2 tests/fsdp_probe.py OUT TOKENIZER \\
        MAX_STEPS [CKPT]

Every step sees the same batch, so a resumed run sees what an uninterrupted one does. Checkpoints
(sharded folders) go to ``OUT/ckpt/step=N.ckpt`` every 2 steps; rank 0 writes the full backbone
and EMA weights at the end to ``OUT/weights.pt``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.walt_fixtures import clip_stream, repeat_loader, tiny_module  # noqa: E402
from walt.lightning.sharding import FSDP2Strategy, full  # noqa: E402


def main(out: Path, tokenizer: Path, max_steps: int, ckpt: str | None) -> None:
    seed_everything(0)
    module = tiny_module(tokenizer)
    trainer = Trainer(
        accelerator="cpu", devices=2, strategy=FSDP2Strategy(), max_steps=max_steps,
        gradient_clip_val=1.0, logger=False, enable_progress_bar=False, limit_val_batches=0,
        enable_model_summary=False, default_root_dir=str(out),
        callbacks=[ModelCheckpoint(dirpath=out / "ckpt", filename="{step}", every_n_train_steps=2,
                                   save_top_k=-1)],
    )
    trainer.fit(module, repeat_loader({"video": clip_stream(2)}, 64), ckpt_path=ckpt)
    # full() is a collective: every rank gathers, rank 0 writes.
    weights = {
        name: {k: full(v).detach().clone() for k, v in net.state_dict().items()}
        for name, net in (("backbone", module.backbone), ("ema", module.ema.module))
    }
    if trainer.global_rank == 0:
        torch.save(weights, out / "weights.pt")


if __name__ == "__main__":
    out, tok, steps = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    main(out, tok, steps, sys.argv[4] if len(sys.argv) > 4 else None)
