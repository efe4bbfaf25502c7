"""walt.precompute writes latent shards that the datamodule reads back without pixels."""

from __future__ import annotations

import torch

from data import WebVideoDataModule
from tests.test_walt_configs import assets  # noqa: F401 (fixture)
from tokenizer import load_tokenizer
from walt.precompute import main as precompute_main


def test_precompute_roundtrip_with_text(assets, tmp_path):  # noqa: F811
    out = tmp_path / "lat-%06d.tar"
    precompute_main([assets["tokenizer"], str(out), "--videos", assets["shards"], "--images",
                     assets["shards"], "--num-frames", "9", "--size", "16", "--num-workers", "0",
                     "--text-encoder", assets["t5"], "--device", "cpu"])
    kw = dict(num_frames=9, size=16, batch_size=16, num_workers=0)
    pix = WebVideoDataModule(val_videos=assets["shards"], val_images=assets["shards"], **kw)
    lat = WebVideoDataModule(val_videos=str(tmp_path / "lat-000000.tar"),
                             val_images=str(tmp_path / "lat-000000.tar"), load_pixels=False, **kw)
    pix.setup("validate")
    lat.setup("validate")
    vae = load_tokenizer(assets["tokenizer"])
    for a, b in zip(pix.val_dataloader(), lat.val_dataloader()):
        (kind, sa), (kind_b, sb) = next(iter(a.items())), next(iter(b.items()))
        assert kind == kind_b and sa["key"] == sb["key"]
        assert "pixels" not in sb
        torch.testing.assert_close(sb["latents"], vae.encode(sa["pixels"]))
        assert torch.equal(sa["label"], sb["label"]) and sa["caption"] == sb["caption"]
        assert sb["text_emb"].shape[:2] == sb["text_mask"].shape and sb["text_emb"].shape[-1] == 32
