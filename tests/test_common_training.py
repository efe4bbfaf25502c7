"""The training-loop pieces both modules share: EMA, LR schedule, NaN/inf guard, step seeding,
output paths, the resumable CSV logger and the clean-tree check of the suite."""

from __future__ import annotations

import csv
import subprocess
from types import SimpleNamespace

import pytest
import torch
from jsonargparse import Namespace

import tests.conftest as suite
from common.csv_logger import ResumableCSVLogger
from common.ema import EMA, ema_decay_at
from common.lr import warmup_cosine_factor
from common.nonfinite import NonFiniteGuard, check_finite_state, grads_finite
from common.run_paths import module_output_path, root_output_paths
from common.seeding import step_generator, step_seed


def test_ema_warms_up_and_follows_the_model():
    net = torch.nn.Linear(2, 2)
    ema = EMA(net, decay=0.9)
    start = ema.module.weight.clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)  # first update: decay min(0.9, 1/10) = 0.1
    torch.testing.assert_close(ema.module.weight, 0.1 * start + 0.9 * net.weight)
    assert int(ema.n_averaged) == 1 and not ema.module.weight.requires_grad
    assert ema_decay_at(0, 0.9) == pytest.approx(0.1) and ema_decay_at(10**6, 0.9) == 0.9
    with pytest.raises(ValueError, match="ema decay"):
        EMA(net, decay=1.0)


def test_warmup_reaches_the_full_rate_at_its_last_step():
    kw = dict(warmup_steps=4, total_steps=10, min_lr_ratio=0.0)
    assert [warmup_cosine_factor(s, **kw) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert warmup_cosine_factor(10, **kw) == pytest.approx(0.0)
    assert warmup_cosine_factor(7, warmup_steps=4, total_steps=10, min_lr_ratio=1.0) == 1.0


def test_step_seeds_differ_by_step_and_rank_and_repeat():
    seeds = {step_seed(0, step=s, rank=r) for s in range(50) for r in range(8)}
    assert len(seeds) == 400
    a = torch.randn(3, generator=step_generator(1, step=5, rank=2))
    torch.testing.assert_close(a, torch.randn(3, generator=step_generator(1, step=5, rank=2)))
    with pytest.raises(ValueError, match="step"):
        step_seed(0, step=-1)


def test_guard_counts_and_stops_after_consecutive_bad_steps():
    guard = NonFiniteGuard(max_steps=2)
    assert not guard.record(False, what="loss") and not guard.record(False, what="loss")
    assert guard.record(True, what="")  # a good step resets the run, not the total
    guard.record(False, what="gradient")
    guard.record(False, what="gradient")
    with pytest.raises(FloatingPointError, match="gradient was non-finite for 3 consecutive"):
        guard.record(False, what="gradient")
    assert int(guard.total) == 5
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([1.0, float("inf")])
    assert not grads_finite([p])
    with pytest.raises(FloatingPointError, match="w"):
        check_finite_state({"w": torch.tensor([float("nan")]), "n": torch.tensor(3)})


def test_relative_output_paths_go_under_default_root_dir(tmp_path):
    logger = Namespace(class_path="x.Logger", init_args=Namespace(save_dir=".", name="logs"))
    ckpt = Namespace(class_path="x.Ckpt", init_args=Namespace(dirpath="checkpoints"))
    fixed = Namespace(class_path="x.Ckpt", init_args=Namespace(dirpath=str(tmp_path / "abs")))
    config = Namespace(trainer=Namespace(default_root_dir=str(tmp_path / "run"), logger=logger,
                                         callbacks=[ckpt, fixed]))
    root_output_paths(config)
    assert logger.init_args.save_dir == str(tmp_path / "run")
    assert ckpt.init_args.dirpath == str(tmp_path / "run" / "checkpoints")
    assert fixed.init_args.dirpath == str(tmp_path / "abs")
    module = SimpleNamespace(_trainer=SimpleNamespace(default_root_dir=str(tmp_path / "run")))
    assert module_output_path(module, "media") == tmp_path / "run" / "media"


def test_csv_logger_keeps_history_on_resume(tmp_path):
    first = ResumableCSVLogger(save_dir=str(tmp_path))
    for step in range(3):
        first.log_metrics({"train/loss": 1.0 + step}, step=step)
    first.save()
    # A resume from the checkpoint of step 2: the row of step 2 is logged again.
    second = ResumableCSVLogger(save_dir=str(tmp_path))
    second.log_metrics({"train/loss": 9.0, "val/loss": 0.5}, step=2)
    second.log_metrics({"train/loss": 10.0}, step=3)
    second.save()
    with open(tmp_path / "logs" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["step"], r["train/loss"]) for r in rows] == [
        ("0", "1.0"), ("1", "2.0"), ("2", "9.0"), ("3", "10.0")]
    assert rows[2]["val/loss"] == "0.5" and rows[0]["val/loss"] == ""


def test_clean_tree_check_sees_new_and_ignored_files(tmp_path, monkeypatch):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("outputs/\n")
    monkeypatch.setattr(suite, "REPO", tmp_path)
    before = suite._tree_status()
    (tmp_path / "outputs" / "run").mkdir(parents=True)
    (tmp_path / "outputs" / "run" / "last.ckpt").write_text("x")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "m.pyc").write_text("")
    assert suite._tree_status() - before == {"!! outputs/run/last.ckpt"}


def test_media_go_to_the_loggers_that_take_them(tmp_path, monkeypatch):
    import sys
    from types import ModuleType

    import numpy as np

    from common.media_log import log_media

    calls = []
    experiment = SimpleNamespace(log=lambda d: calls.append(("wandb", d)),
                                 add_image=lambda *a, **k: calls.append(("tb", a, k)))
    fake_wandb = ModuleType("wandb")
    fake_wandb.Video = lambda path, format: ("video", path, format)
    fake_wandb.Image = lambda image: ("image", image.shape)
    monkeypatch.setitem(sys.modules, "wandb", fake_wandb)
    loggers = [type(name, (), {"experiment": experiment})()
               for name in ("WandbLogger", "TensorBoardLogger", "CSVLogger")]
    image = np.zeros((4, 6, 3), dtype=np.uint8)
    log_media(loggers, tag="samples", step=7, videos=[tmp_path / "a.mp4"], image=image)
    assert calls[0] == ("wandb", {"samples": [("video", str(tmp_path / "a.mp4"), "mp4")],
                                  "samples_still": ("image", (4, 6, 3)),
                                  "trainer/global_step": 7})
    assert calls[1][0] == "tb" and calls[1][1][0] == "samples" and calls[1][2]["global_step"] == 7
    assert len(calls) == 2  # the CSV logger takes no media
