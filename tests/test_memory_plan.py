"""benchmarks/memory_plan.py: parameter count from the meta device, per-GPU bytes, the plan."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from benchmarks.memory_plan import (
    activation_bytes,
    backbone_spec,
    count_parameters,
    main,
    state_bytes,
)
from common.registry import build

ROOT = Path(__file__).resolve().parents[1]


def test_meta_count_matches_a_real_build():
    spec = backbone_spec(yaml.safe_load((ROOT / "configs/walt/tiny_cpu.yaml").read_text()))
    n_meta, net = count_parameters(spec)
    assert next(net.parameters()).is_meta
    assert n_meta == sum(p.numel() for p in build("backbone", spec).parameters())


def test_fsdp_shards_the_states_and_checkpointing_shrinks_activations():
    ddp = state_bytes(1000, 8, sharded=False, block_params=10)
    fsdp = state_bytes(1000, 8, sharded=True, block_params=10)
    assert ddp["total"] == 20 * 1000  # fp32 weights, grads, two Adam moments, EMA
    assert fsdp["total"] == 20 * 1000 / 8 + 2 * 10 * 8
    spec = backbone_spec(yaml.safe_load((ROOT / "configs/walt/tiny_cpu.yaml").read_text()))
    _, net = count_parameters(spec)
    full = activation_bytes(net, 100, checkpointing=False)
    assert activation_bytes(net, 200, checkpointing=False) == 2 * full  # linear in tokens
    assert activation_bytes(net, 100, checkpointing=True) < full


def test_plan_of_the_t2v_base_and_bad_gpus(capsys):
    main(["--config", str(ROOT / "configs/walt/t2v_base.yaml"), "--gpus", "8"])
    out = capsys.readouterr().out
    assert "| 8 | FSDP |" in out and "3.1" in out  # ~3B parameters (W.A.L.T Table: T2V base)
    with pytest.raises(SystemExit):
        main(["--gpus", "0"])
