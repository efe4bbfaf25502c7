"""``python -m walt.evaluate sr``: an SR stage against bicubic upsampling of the decoded
low-res clip, on ground-truth clips."""

from __future__ import annotations

import json

import pytest
import torch

from data.synthetic import write_synthetic
from tests.walt_fixtures import FRAMES, SR_SIZE, tiny_sr_module, tiny_tokenizer_file
from walt.core.sr_comparison import bicubic_upsample
from walt.evaluate.__main__ import main
from walt.evaluate.super_resolution import evaluate_super_resolution


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("sr_eval")
    tok = tiny_tokenizer_file(root / "tiny.safetensors")
    write_synthetic(str(root / "val-%06d.tar"), num_videos=3, frames=FRAMES, size=SR_SIZE,
                    shapes=["circle"], colors=["red"], directions=["left"], seed=1)
    return tok, str(root / "val-000000.tar")


def test_bicubic_is_a_2x_upsampling_that_keeps_flat_clips():
    flat = torch.full((1, 3, 2, 4, 6), 0.25)
    assert torch.allclose(bicubic_upsample(flat, 2), torch.full((1, 3, 2, 8, 12), 0.25), atol=1e-6)


def test_scores_sr_and_bicubic_per_clip(setup, tmp_path):
    tok, shards = setup
    module = tiny_sr_module(tok).eval()
    result = evaluate_super_resolution(module, shards, num_clips=2, batch_size=2,
                                       sheet=tmp_path / "sheet.png", progress=False)
    assert result["num_clips"] == 2 and len(result["clips"]) == 2
    for key in ("sr_psnr", "bicubic_psnr", "sr_ssim", "bicubic_ssim"):
        assert all(torch.isfinite(torch.tensor(row[key])) for row in result["clips"])
        assert result[key]["mean"] == pytest.approx(
            sum(row[key] for row in result["clips"]) / 2)
    # An untrained stage is far from the truth; bicubic of the decoded clip is not identical.
    assert result["sr_psnr"]["mean"] != result["bicubic_psnr"]["mean"]
    assert result["noise_level"] == module.sampling.noise_level
    assert (tmp_path / "sheet.png").stat().st_size > 0


def test_rejects_a_base_stage(setup):
    from tests.walt_fixtures import tiny_module

    tok, shards = setup
    with pytest.raises(ValueError, match="not a super-resolution stage"):
        evaluate_super_resolution(tiny_module(tok), shards, num_clips=1, progress=False)


def test_command_line_writes_json(setup, tmp_path, monkeypatch):
    import walt.core.loading as loading

    tok, shards = setup
    seen = {}

    def load(path, map_location=None, **overrides):  # the checkpoint's module, built here
        seen.update(path=path, module=tiny_sr_module(tok, **overrides))
        return seen["module"]

    monkeypatch.setattr(loading, "load_walt_checkpoint", load)
    out = tmp_path / "sr.json"
    main(["sr", "sr.ckpt", shards, "--num-clips", "1", "--num-inference-steps", "2",
          "--noise-level", "0.2", "--json", str(out)])
    saved = json.loads(out.read_text())
    assert saved["noise_level"] == 0.2 and saved["num_clips"] == 1
    assert set(saved["clips"][0]) == {"clip", "sr_psnr", "sr_ssim", "bicubic_psnr",
                                      "bicubic_ssim"}
    # Deterministic DDIM at the asked number of steps (the criterion's setting).
    assert seen["path"] == "sr.ckpt"
    sampling = seen["module"].sampling
    assert (sampling.sampler, sampling.sampler_options) == ("ddim", {"eta": 0.0})
    assert (sampling.num_inference_steps, sampling.noise_level) == (2, 0.2)
