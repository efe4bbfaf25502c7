"""Bad numbers on the command line are refused by argparse (exit 2, naming the flag), before
anything is loaded: ``walt.evaluate`` and ``walt.generate`` share ``common.cli_types``."""

from __future__ import annotations

import argparse

import pytest

from common.cli_types import non_negative_int, positive_float, positive_int, unit_float
from walt.evaluate.__main__ import build_parser as evaluate_parser
from walt.generate import build_parser as generate_parser

SR = ["sr", "sr.ckpt", "ref"]


@pytest.mark.parametrize(
    "argv",
    [
        [*SR, "--noise-level", "nan"],
        [*SR, "--noise-level", "inf"],
        [*SR, "--noise-level", "-0.1"],
        [*SR, "--noise-level", "1.5"],
        [*SR, "--num-inference-steps", "0"],
        [*SR, "--num-clips", "-1"],
        [*SR, "--batch-size", "two"],
        ["psnr", "gen", "ref", "--context-frames", "-1"],
        ["drift", "v.mp4", "--chunk-frames", "4", "--seam-overlap", "-2"],
        ["fvd", "gen", "ref", "--i3d", "i3d.pt", "--num-draws", "0"],
    ],
)
def test_evaluate_refuses_bad_numbers(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        evaluate_parser().parse_args(argv)
    assert exit_info.value.code == 2
    flag = next(a for a in reversed(argv) if a.startswith("--"))
    assert f"argument {flag}" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["--noise-level", "nan"],
        ["--guidance-scale", "inf"],
        ["--num-inference-steps", "0"],
        ["--fps", "0"],
    ],
)
def test_generate_refuses_bad_numbers(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        generate_parser().parse_args(["ck.ckpt", "--out", "out", *argv])
    assert exit_info.value.code == 2
    assert f"argument {argv[0]}" in capsys.readouterr().err


def test_good_numbers_pass():
    args = evaluate_parser().parse_args([*SR, "--noise-level", "0", "--num-inference-steps", "3"])
    assert (args.noise_level, args.num_inference_steps) == (0.0, 3)
    args = generate_parser().parse_args(["ck.ckpt", "--out", "o", "--noise-level", "1"])
    assert args.noise_level == [1.0]


@pytest.mark.parametrize(
    ("parse", "good", "bad"),
    [
        (positive_int, {"1": 1, "12": 12}, ["0", "-3", "1.5"]),
        (non_negative_int, {"0": 0, "4": 4}, ["-1", "x"]),
        (positive_float, {"0.5": 0.5, "8": 8.0}, ["0", "-1", "nan", "inf"]),
        (unit_float, {"0": 0.0, "1": 1.0, "0.25": 0.25}, ["-0.01", "1.01", "nan", "-inf"]),
    ],
)
def test_cli_types(parse, good, bad):
    assert {text: parse(text) for text in good} == good
    for text in bad:
        with pytest.raises((argparse.ArgumentTypeError, ValueError)):
            parse(text)
