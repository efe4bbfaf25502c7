"""``python -m tokenizer.evaluate``: the tokenizer and the trivial codec on the same clips,
per clip and mean, printed as a table and written as JSON; seeded clips per file."""

import json

import numpy as np
import pytest
import torch

from data.encode import write_mp4
from data.synthetic import write_synthetic
from tokenizer import CausalVAE, save_tokenizer
from tokenizer.clips import folder_clips
from tokenizer.evaluate import main


def test_evaluate_prints_and_writes_model_and_codec(tmp_path, capsys):
    write_synthetic(str(tmp_path / "s-%06d.tar"), num_videos=2, frames=9, size=16, seed=0)
    torch.manual_seed(0)
    ckpt = save_tokenizer(CausalVAE.from_preset("tiny").eval(), tmp_path / "t.safetensors")
    out = tmp_path / "r.json"
    main(
        [
            str(ckpt),
            str(tmp_path / "s-000000.tar"),
            "--num-frames",
            "9",
            "--size",
            "16",
            "--json",
            str(out),
        ]
    )
    text = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert len(result["clips"]) == 2
    for row in result["clips"]:
        assert row["clip"] in text and {"psnr", "ssim", "codec_psnr", "codec_ssim"} <= row.keys()
    assert "codec PSNR" in text and "mean over 2 clips" in text and "trivial codec" in text
    codec = [r["codec_psnr"] for r in result["clips"]]
    assert result["codec_mean_psnr"] == pytest.approx(sum(codec) / 2)
    # a random tokenizer is far below the codec on the same clips
    assert result["mean_psnr"] < result["codec_mean_psnr"]
    assert f"{result['codec_mean_psnr']:.2f}" in text


def test_folder_clips_per_file_are_seeded_and_distinct(tmp_path):
    frames = (np.arange(40)[:, None, None, None] * 6 + np.zeros((1, 16, 24, 3))).astype(np.uint8)
    write_mp4(frames, tmp_path / "ramp.mp4", fps=8)
    kwargs = dict(num_frames=5, size=8, images=False, clips_per_file=3, target_fps=4)
    first = list(folder_clips(tmp_path, **kwargs))
    again = list(folder_clips(tmp_path, **kwargs))
    assert [k for k, _ in first] == ["ramp.mp4@0", "ramp.mp4@1", "ramp.mp4@2"]
    for (_, a), (_, b) in zip(first, again):
        torch.testing.assert_close(a, b)
        assert a.shape == (1, 3, 5, 8, 8)
        # stride 2 at 4 fps from 8 fps: consecutive clip frames are 2 source frames apart
        assert (a[0, 0, 1:, 0, 0] - a[0, 0, :-1, 0, 0]).mean() * 127.5 == pytest.approx(12, abs=2)
    assert len({float(x[0, 0, 0, 0, 0]) for _, x in first}) > 1
    with pytest.raises(ValueError, match="clips_per_file"):
        next(folder_clips(tmp_path, num_frames=5, size=8, images=False, clips_per_file=0))
