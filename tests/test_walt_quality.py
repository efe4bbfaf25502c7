"""``GenerationQuality``: detector scores of sampled clips logged during training."""

from __future__ import annotations

import csv
import json

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger

from data.synthetic import class_list, render_clip, write_synthetic
from tests.walt_fixtures import clip_stream, repeat_loader, tiny_module, tiny_tokenizer_file
from walt.evaluate_synthetic import evaluate_reconstructions
from walt.evaluate_synthetic import main as evaluate_synthetic_main
from walt.lightning.quality import QUALITY_KEYS, GenerationQuality

CLASSES = dict(shapes=["square"], colors=["red"], directions=["left", "right", "down"])


@pytest.fixture()
def shards(tmp_path):
    write_synthetic(str(tmp_path / "shapes-%06d.tar"), num_videos=3, frames=9, size=16,
                    object_size=6, **CLASSES)
    return str(tmp_path / "shapes-000000.tar")


@pytest.fixture()
def module(tmp_path):
    return tiny_module(tiny_tokenizer_file(tmp_path / "tok.safetensors"))  # 3 classes


def _rendered(labels: torch.Tensor, *, reverse_time: bool) -> torch.Tensor:
    """The real clips of the requested classes, ``(B, 3, 17, 32, 32)`` in [-1, 1]."""
    classes = class_list(**CLASSES)
    clips = []
    for i, label in enumerate(labels.tolist()):
        frames, _ = render_clip(classes[label], frames=17, size=32, object_size=10,
                                rng=np.random.default_rng(i))
        clip = torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1  # (3, T, H, W)
        clips.append(clip.flip(1) if reverse_time else clip)
    return torch.stack(clips)


@pytest.mark.parametrize("reverse_time", [False, True])
def test_score_matches_each_clip_to_its_requested_class(shards, module, reverse_time):
    """The callback asks for every class and scores each clip against the class it asked for:
    perfect clips score 1, clips played backwards keep shape and colour but lose direction."""
    asked = []

    def fake_generate(*, stream, **kwargs):
        asked.append(stream["label"].clone())
        return _rendered(stream["label"], reverse_time=reverse_time)

    module.generate = fake_generate
    callback = GenerationQuality(class_names_from=shards, per_class=2, batch_size=4)
    callback.setup(pl.Trainer(logger=False), module, "fit")
    scores = callback.score(module)
    assert torch.cat(asked).tolist() == [0, 0, 1, 1, 2, 2]
    assert scores["shape"] == scores["color"] == 1.0
    assert scores["direction"] == (0.0 if reverse_time else 1.0)
    assert scores["count"] == 6


def test_logs_quality_next_to_the_loss(shards, module, tmp_path):
    logger = CSVLogger(tmp_path, name="logs", version="")
    trainer = pl.Trainer(
        max_steps=2, accelerator="cpu", logger=logger, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
        log_every_n_steps=1,
        callbacks=[GenerationQuality(class_names_from=shards, every_n_steps=2,
                                    sampling={"num_inference_steps": 2})],
    )
    trainer.fit(module, repeat_loader({"video": clip_stream(3)}, 2))
    with open(tmp_path / "logs" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    logged = [r for r in rows if r.get("quality/joint")]
    assert len(logged) == 1 and logged[0]["step"] == "1"  # Lightning logs step 2 as index 1
    for key in QUALITY_KEYS:
        assert 0.0 <= float(logged[0][f"quality/{key}"]) <= 1.0


def test_class_count_must_match_the_backbone(tmp_path, module):
    write_synthetic(str(tmp_path / "two-%06d.tar"), num_videos=2, frames=9, size=16,
                    object_size=6, shapes=["circle"], colors=["red"], directions=["left", "up"])
    callback = GenerationQuality(class_names_from=str(tmp_path / "two-000000.tar"))
    with pytest.raises(ValueError, match="num_classes=3"):
        callback.setup(pl.Trainer(logger=False), module, "fit")


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="every_n_steps"):
        GenerationQuality(class_names_from="x.tar", every_n_steps=-1)
    with pytest.raises(ValueError, match="per_class"):
        GenerationQuality(class_names_from="x.tar", per_class=0)


class _Identity(torch.nn.Module):
    """A lossless stand-in tokenizer: its "latents" are the pixels."""

    def encode(self, pixels, pad=True):
        return pixels

    def decode(self, latents, crop_to=None):
        return latents


def test_reconstruction_scores_are_the_tokenizers_ceiling(tmp_path, monkeypatch):
    pattern = str(tmp_path / "val-%06d.tar")
    write_synthetic(pattern, num_videos=4, frames=9, size=64, motion="wrap", **CLASSES)
    shards, out = str(tmp_path / "val-000000.tar"), tmp_path / "recon.json"
    tokenizer = tiny_tokenizer_file(tmp_path / "tok.safetensors")  # untrained: blurs all away
    evaluate_synthetic_main(["--reconstruct", str(tokenizer), "--shards", shards,
                             "--num-frames", "9", "--json", str(out)])
    untrained = json.loads(out.read_text())
    assert untrained["input_joint"] == 1.0 and untrained["count"] == 4
    assert untrained["joint"] < 1.0 and untrained["psnr"] < 25 and untrained["size"] == 32
    monkeypatch.setattr("walt.evaluate_synthetic.load_tokenizer", lambda path: _Identity())
    lossless = evaluate_reconstructions("any", shards, size=32, num_frames=9)
    assert lossless["joint"] == 1.0 and lossless["psnr"] > 60
    with pytest.raises(SystemExit):
        evaluate_synthetic_main(["--shards", shards])  # neither samples nor --reconstruct
