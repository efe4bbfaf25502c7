"""Real Lightning DDP (2 CPU processes, gloo): the ranks' training batches are disjoint and
together cover every sample; the skipped-sample callback runs under DDP."""

from __future__ import annotations

import io
import json
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from data.callbacks import SkippedSamplesLogger
from data.datamodule import WebVideoDataModule


class _KeyRecorder(pl.LightningModule):
    def __init__(self, out: str) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.out = out
        self.keys: list[str] = []

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self.keys += batch["image"]["key"]
        return (self.weight * batch["image"]["pixels"].mean()).sum()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.keys += [f"val:{key}" for stream in batch.values() for key in stream["key"]]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def on_train_end(self) -> None:
        Path(self.out, f"rank{self.global_rank}.json").write_text(json.dumps(self.keys))


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="png")
    return buffer.getvalue()


@pytest.mark.slow
def test_lightning_ddp_ranks_disjoint_and_covering(tmp_path: Path) -> None:
    for shard in range(4):
        with wds.TarWriter(str(tmp_path / f"s-{shard}.tar")) as sink:
            for i in range(3):
                sink.write({"__key__": f"s{shard}k{i}", "png": _png(shard * 10 + i)})
    shards = str(tmp_path / "s-{0..3}.tar")
    module = WebVideoDataModule(
        train_images=shards, val_images=shards, size=8, batch_size=2, num_workers=0
    )
    trainer = pl.Trainer(
        strategy="ddp_spawn", accelerator="cpu", devices=2, max_epochs=1, logger=False,
        num_sanity_val_steps=0,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[SkippedSamplesLogger()],
    )
    trainer.fit(_KeyRecorder(str(tmp_path)), datamodule=module)
    everything = sorted(f"s{s}k{i}" for s in range(4) for i in range(3))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for prefix in ("", "val:"):  # training, then validation keys
        seen = [[k[len(prefix):] for k in keys if k.startswith("val:") == bool(prefix)]
                for keys in ranks]
        assert set(seen[0]).isdisjoint(seen[1]) and len(seen[0]) == len(seen[1]) == 6
        assert sorted(seen[0] + seen[1]) == everything


def test_skipped_samples_reach_the_logger(tmp_path: Path) -> None:
    with wds.TarWriter(str(tmp_path / "s.tar")) as sink:
        for i in range(4):
            sink.write({"__key__": f"k{i}", "png": _png(i)})
        sink.write({"__key__": "bad", "png": b"not a png"})
    module = WebVideoDataModule(
        train_images=str(tmp_path / "s.tar"), size=8, batch_size=2, num_workers=0,
        shuffle_buffer=0, failure_check_after=100,
    )
    logger = SkippedSamplesLogger()
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[logger],
    )
    with pytest.warns(UserWarning, match="'bad' in shard"):
        trainer.fit(_KeyRecorder(str(tmp_path)), datamodule=module)
    assert logger.total == 1 and float(trainer.callback_metrics["data/skipped"]) == 1.0


def _ddp_trainer() -> pl.Trainer:
    return pl.Trainer(
        strategy="ddp_spawn", accelerator="cpu", devices=2, max_epochs=1, logger=False,
        num_sanity_val_steps=0, limit_val_batches=0,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )


@pytest.mark.slow
def test_lightning_ddp_uneven_shards_with_epoch_length(tmp_path: Path) -> None:
    # 3 shards for 2 ranks x 2 workers: rank 1 has one shard for its two workers, which then
    # deal its samples. epoch_length gives both ranks the same number of steps.
    for shard in range(3):
        with wds.TarWriter(str(tmp_path / f"s-{shard}.tar")) as sink:
            for i in range(4):
                sink.write({"__key__": f"s{shard}k{i}", "png": _png(shard * 10 + i)})
    module = WebVideoDataModule(train_images=str(tmp_path / "s-{0..2}.tar"), size=8,
                                batch_size=2, num_workers=2, epoch_length=12)
    _ddp_trainer().fit(_KeyRecorder(str(tmp_path)), datamodule=module)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 6


@pytest.mark.slow
def test_lightning_ddp_rank_with_only_bad_shards_names_the_rank(tmp_path: Path) -> None:
    with wds.TarWriter(str(tmp_path / "s-0.tar")) as sink:
        for i in range(3):
            sink.write({"__key__": f"good{i}", "png": _png(i)})
    with wds.TarWriter(str(tmp_path / "s-1.tar")) as sink:
        for i in range(3):
            sink.write({"__key__": f"bad{i}", "png": b"broken"})
    module = WebVideoDataModule(train_images=str(tmp_path / "s-{0..1}.tar"), size=8,
                                batch_size=1, num_workers=0, epoch_length=8,
                                failure_check_after=1000)
    with pytest.raises(Exception, match="rank [01] worker 0.*no usable sample"):
        _ddp_trainer().fit(_KeyRecorder(str(tmp_path)), datamodule=module)
