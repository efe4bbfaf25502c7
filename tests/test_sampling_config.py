"""``SamplingConfig``: every sampling option in one frozen value, checked when it is built, changed
field by field from YAML, the command line and ``settings.json``, and saved whole with each run;
generation that goes non-finite fails before writing; bad command-line values exit 2."""

from __future__ import annotations

import json
import math
import re
from dataclasses import fields

import pytest
import torch

from tests.test_pipelines_cascade import ckpts  # noqa: F401 (fixture)
from walt.core.sampling import SamplingConfig
from walt.generate import build_parser
from walt.generate import main as generate_main

FIELDS = {f.name for f in fields(SamplingConfig)}


def _run(argv: list[str]):
    return generate_main([*argv, "--no-progress"])


def _changed(a: dict, b: dict) -> dict:
    """The fields whose values differ between two saved sampling configs."""
    assert set(a) == set(b) == FIELDS  # each saved whole
    return {k: (a[k], b[k]) for k in FIELDS if a[k] != b[k]}


# ------------------------------------------------------------------ construction checks
@pytest.mark.parametrize("name", ["guidance_scale", "guidance_min_scale", "frame_guidance_scale",
                                  "guidance_rescale", "noise_level"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_every_numeric_option_must_be_finite(name, value):
    with pytest.raises(ValueError, match=name):
        SamplingConfig(**{name: value})


def test_a_nan_min_scale_is_refused_with_a_schedule():
    with pytest.raises(ValueError, match="guidance_min_scale"):
        SamplingConfig(guidance_schedule="linear", guidance_min_scale=math.nan)


@pytest.mark.parametrize("changes, match", [
    ({"noise_level": 1.5}, "noise_level must be in"),
    ({"noise_level": -0.1}, "noise_level must be in"),
    ({"num_inference_steps": 0}, "num_inference_steps"),
    ({"guidance_rescale": 2.0}, "guidance_rescale"),
    ({"guidance_schedule": "wavy"}, "guidance_schedule"),
    ({"sampler": "euler"}, "unknown sampler"),
    ({"sampler_options": {"bogus": 1}}, r"\['bogus'\] are not options of the 'ddim'"),
    ({"sampler": "ddpm", "sampler_options": {"eta": 0.5}}, "'ddpm' sampler"),
    ({"sampler_options": {"eta": math.nan}}, r"sampler_options\['eta'\]"),
    ({"guidance_reverse": "yes"}, "guidance_reverse"),
])
def test_bad_options_are_refused_naming_them(changes, match):
    with pytest.raises(ValueError, match=match):
        SamplingConfig(**changes)


def test_override_replaces_one_field_and_refuses_unknown_ones():
    base = SamplingConfig(sampler_options={"eta": 0.5})
    changed = base.override({"guidance_scale": 3.0})
    assert {k: v for k, v in changed.to_dict().items() if base.to_dict()[k] != v} == {
        "guidance_scale": 3.0}
    with pytest.raises(ValueError, match="guidance_scal"):
        base.override({"guidance_scal": 3.0})
    with pytest.raises(Exception, match="cannot assign"):
        base.guidance_scale = 2.0  # frozen


def test_every_field_has_a_command_line_flag():
    dests = {a.dest for a in build_parser()._actions}
    assert FIELDS <= dests


# ---------------------------------------------------------- the three routes, one field each
def test_the_command_line_changes_one_field_and_saves_it_whole(ckpts, tmp_path):  # noqa: F811
    common = [ckpts["base"], "--sr", ckpts["sr1"], "--labels", "0"]
    plain = _run([*common, "--out", str(tmp_path / "a")])
    scaled = _run([*common, "--guidance-scale", "3", "--out", str(tmp_path / "b")])
    a, b = (json.loads((d / "settings.json").read_text()) for d in (plain, scaled))
    assert _changed(a["sampling"], b["sampling"]) == {"guidance_scale": (1.0, 3.0)}
    assert a["sampling"]["num_inference_steps"] == 2  # the checkpoint's, made explicit
    assert _changed(a["sr_sampling"][0], b["sr_sampling"][0]) == {}  # the stage keeps its own
    assert a["sr_sampling"][0]["noise_level"] == 0.15


def test_settings_json_changes_one_field(ckpts, tmp_path, monkeypatch):  # noqa: F811
    import walt.core.generation as generation

    first = _run([ckpts["base"], "--labels", "0", "--out", str(tmp_path / "a")])
    saved = json.loads((first / "settings.json").read_text())
    saved["sampling"]["guidance_scale"] = 2.5
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(saved))
    seen = []
    sample = generation.sample
    monkeypatch.setattr(generation, "sample",
                        lambda *a, guidance, **kw: seen.append(guidance) or sample(
                            *a, guidance=guidance, **kw))
    again = _run(["--from-settings", str(edited), "--out", str(tmp_path / "b")])
    resaved = json.loads((again / "settings.json").read_text())
    assert _changed(json.loads((first / "settings.json").read_text())["sampling"],
                    resaved["sampling"]) == {"guidance_scale": (1.0, 2.5)}
    assert [g.guidance_scale for g in seen] == [2.5]


def test_yaml_changes_one_field(ckpts, tmp_path):  # noqa: F811
    """``model.init_args.sampling`` in a checkpoint's (YAML-made) hyperparameters: one key
    changes one field of the module's SamplingConfig."""
    from walt.core.loading import load_walt_checkpoint

    state = torch.load(ckpts["base"], weights_only=True)
    state["hyper_parameters"]["sampling"] = {**state["hyper_parameters"]["sampling"],
                                             "guidance_scale": 4.0}
    torch.save(state, tmp_path / "edited.ckpt")
    a = load_walt_checkpoint(ckpts["base"]).sampling.to_dict()
    b = load_walt_checkpoint(tmp_path / "edited.ckpt").sampling.to_dict()
    assert _changed(a, b) == {"guidance_scale": (1.0, 4.0)}


def test_the_noise_level_flag_sets_each_stage(ckpts, tmp_path):  # noqa: F811
    out = _run([ckpts["base"], "--sr", ckpts["sr1"], "--sr", ckpts["sr2"], "--labels", "0",
                "--noise-level", "0.1", "--noise-level", "0.3", "--out", str(tmp_path / "a")])
    saved = json.loads((out / "settings.json").read_text())
    assert [st["noise_level"] for st in saved["sr_sampling"]] == [0.1, 0.3]


# ------------------------------------------------------------- non-finite generation
@pytest.mark.parametrize("mode", ["sample", "extend"])
def test_non_finite_latents_fail_before_writing(ckpts, tmp_path, monkeypatch, mode):  # noqa: F811
    from models import WindowedDiT

    monkeypatch.setattr(WindowedDiT, "forward",
                        lambda self, x, *a, **kw: torch.full_like(x, math.nan))
    out = tmp_path / "run"
    with pytest.raises(FloatingPointError, match="non-finite latents"):
        _run([ckpts["base"], "--labels", "0,1", "--mode", mode, "--num-chunks", "2",
              "--out", str(out)])
    assert not out.exists() or list(out.iterdir()) == []


def test_non_finite_sr_latents_fail_before_writing(ckpts, tmp_path, monkeypatch):  # noqa: F811
    from models import WindowedDiT

    forward = WindowedDiT.forward

    def nan_in_sr(self, x, *a, **kw):  # only the SR stage's backbone (it takes a low-res latent)
        out = forward(self, x, *a, **kw)
        return torch.full_like(out, math.nan) if kw.get("lowres") is not None else out

    monkeypatch.setattr(WindowedDiT, "forward", nan_in_sr)
    out = tmp_path / "run"
    with pytest.raises(FloatingPointError, match="SR stage"):
        _run([ckpts["base"], "--sr", ckpts["sr1"], "--labels", "0", "--out", str(out)])
    assert not out.exists() or list(out.iterdir()) == []


# ------------------------------------------------------------------ command-line errors
@pytest.mark.parametrize("extra, message", [
    (["--num-frames", "0"], "--num-frames: must be >= 1"),
    (["--batch-size", "0"], "--batch-size: must be >= 1"),
    (["--size", "0"], "--size: sides must be >= 1"),
    (["--size", "16x0"], "--size: sides must be >= 1"),
    (["--fps", "nan"], "--fps: must be a finite number"),
    (["--fps", "0"], "--fps: must be positive"),
    (["--guidance-scale", "nan"], "--guidance-scale: must be a finite number"),
    (["--guidance-scale", "inf"], "--guidance-scale: must be a finite number"),
    (["--guidance-schedule", "linear", "--guidance-min-scale", "nan"], "--guidance-min-scale"),
    (["--frame-guidance-scale", "nan"], "--frame-guidance-scale: must be a finite"),
    (["--sampler-options", "{eta: 1"], "--sampler-options: not valid JSON"),
    (["--sampler-options", "[1]"], "--sampler-options: must be a JSON object"),
    (["--sampler-options", '{"bogus": 1}'], r"\['bogus'\] are not options of the 'ddim'"),
    (["--sampler", "ddpm", "--sampler-options", '{"eta": 0.5}'], "'ddpm' sampler"),
    (["--sampler-options", '{"eta": -1}'], "eta must be >= 0"),
    (["--sampler-options", '{"eta": "high"}'], "do not suit the 'ddim' sampler"),
    (["--noise-level", "0.1"], "give the stages with --sr"),
    (["--sr", "SR", "--noise-level", "nan"], "--noise-level: must be a finite number"),
    (["--sr", "SR", "--noise-level", "1.5"], "noise_level must be in"),
])
def test_bad_flags_exit_2_with_a_message(ckpts, tmp_path, capsys, extra, message):  # noqa: F811
    extra = [ckpts["sr1"] if v == "SR" else v for v in extra]
    with pytest.raises(SystemExit) as exit_:
        _run([ckpts["base"], "--labels", "0", "--out", str(tmp_path / "run"), *extra])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" in err and "Traceback" not in err
    assert re.search(message, err), err
    assert not (tmp_path / "run" / "settings.json").exists()


def test_a_nan_in_settings_json_exits_2_naming_the_option(ckpts, tmp_path, capsys):  # noqa: F811
    first = _run([ckpts["base"], "--labels", "0", "--out", str(tmp_path / "a")])
    saved = json.loads((first / "settings.json").read_text())
    saved["sampling"]["guidance_scale"] = math.nan  # json writes NaN, which Python reads back
    (tmp_path / "nan.json").write_text(json.dumps(saved))
    with pytest.raises(SystemExit) as exit_:
        _run(["--from-settings", str(tmp_path / "nan.json"), "--out", str(tmp_path / "b")])
    assert exit_.value.code == 2
    assert "guidance_scale must be a finite number" in capsys.readouterr().err


# ----------------------------------------------------------- loaded statistics, data CLI
@pytest.mark.parametrize("key, value", [("latent_std", math.nan), ("latent_std", math.inf),
                                        ("latent_std", 0.0), ("latent_mean", math.nan),
                                        ("latent_mean", -math.inf)])
def test_a_tokenizer_with_non_finite_statistics_is_refused_at_load(tmp_path, key, value):
    from safetensors.torch import load_file, save_file

    from tokenizer import CausalVAE, load_tokenizer
    from tokenizer.loading import CONFIG_KEY

    vae = CausalVAE.from_preset("tiny")
    config = {**vae.config, key: [value] * vae.latent_channels}  # a tampered export's config
    path = tmp_path / "tok.safetensors"
    save_file(vae.state_dict(), str(path), metadata={CONFIG_KEY: json.dumps(config)})
    assert load_file(str(path))  # a readable file: only its statistics are bad
    with pytest.raises(ValueError, match=key):
        load_tokenizer(path)


@pytest.mark.parametrize("flag", ["--num-videos", "--num-images"])
def test_synthetic_refuses_a_negative_count(tmp_path, capsys, flag):
    from data.synthetic import main

    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path / "s-%06d.tar"), flag, "-1"])
    assert exit_.value.code == 2
    assert f"{flag} must be >= 0" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
