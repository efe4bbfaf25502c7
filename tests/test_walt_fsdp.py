"""FSDP2 (walt.lightning.sharding): sharded EMA, DTensor gradients, sharded save/resume, export."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor

from common.ema import EMA
from common.nonfinite import check_finite_state, grads_finite
from tests.unet_fixtures import tiny_unet
from tests.walt_fixtures import tiny_backbone, tiny_tokenizer_file
from walt.export import export_checkpoint
from walt.lightning.sharding import block_lists, full, shard_backbone

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def one_rank_group(tmp_path):
    """A one-process gloo group (FSDP2 needs a process group even for one rank)."""
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    yield init_device_mesh("cpu", (1,))
    dist.destroy_process_group()


def test_sharded_backbone_keeps_keys_ema_and_guard(one_rank_group):
    torch.manual_seed(0)
    net = tiny_backbone()
    keys = list(net.state_dict())
    ema = EMA(net, decay=0.5)
    shard_backbone(net, mesh=one_rank_group, activation_checkpointing=True)
    shard_backbone(ema.module, mesh=one_rank_group, activation_checkpointing=False)
    assert list(net.state_dict()) == keys  # the checkpoint wrapper leaves the keys alone
    assert all(isinstance(p, DTensor) for p in net.parameters())
    before = {k: full(v).clone() for k, v in ema.module.state_dict().items()}
    x = torch.randn(2, 8, 3, 2, 2)
    net.train()
    net(x, torch.tensor([1.0, 2.0]), class_labels=torch.tensor([0, 1])).square().mean().backward()
    params = list(net.parameters())
    assert grads_finite(params)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    ema.update(net)  # DTensor lerp, shard by shard: ema <- 0.1 * ema + 0.9 * net (warm-up)
    for k, v in ema.module.state_dict().items():
        if v.is_floating_point() and k in dict(net.named_parameters()):
            want = 0.1 * before[k] + 0.9 * full(dict(net.named_parameters())[k].detach())
            torch.testing.assert_close(full(v), want)
    params[0].grad.to_local().view(-1)[0] = float("nan")
    assert not grads_finite(params)
    check_finite_state(net.state_dict())
    with torch.no_grad():
        params[0].to_local().view(-1)[0] = float("inf")
    with pytest.raises(FloatingPointError):
        check_finite_state(net.state_dict())


@pytest.mark.parametrize("kind", ["dit", "unet"])
def test_sharded_gradients_equal_plain_ones(one_rank_group, kind):
    """On one rank a sharded, checkpointed backbone must give the plain model's gradients."""
    make = (lambda: tiny_backbone()) if kind == "dit" else (lambda: tiny_unet(in_channels=8))
    torch.manual_seed(0)
    plain = make().train()
    torch.manual_seed(0)
    sharded = shard_backbone(make().train(), mesh=one_rank_group, activation_checkpointing=True)
    x, steps, labels = torch.randn(2, 8, 3, 4, 4), torch.tensor([1.0, 2.0]), torch.tensor([0, 1])
    for net in (plain, sharded):
        net(x, steps, class_labels=labels).square().mean().backward()
    grads = {n: p.grad for n, p in plain.named_parameters()}
    for n, p in sharded.named_parameters():
        torch.testing.assert_close(full(p.grad), grads[n.replace("_checkpoint_wrapped_module.", "")])


def test_block_lists_name_what_is_missing():
    with pytest.raises(TypeError, match="cannot shard Linear"):
        block_lists(torch.nn.Linear(2, 2))


def _fit(out: Path, tok: Path, steps: int, ckpt: Path | None = None) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "tests/fsdp_probe.py", str(out), str(tok), str(steps)] + ([str(ckpt)] if ckpt else [])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return torch.load(out / "weights.pt", weights_only=True)


@pytest.mark.slow  # three 2-process fits, about 90 s on 2 shared cores
def test_fsdp2_two_ranks_resume_and_export(tmp_path):
    tok = tiny_tokenizer_file(tmp_path / "tok.safetensors")
    whole = _fit(tmp_path / "whole", tok, 4)
    ckpts = tmp_path / "whole" / "ckpt"
    assert (ckpts / "step=2.ckpt" / ".metadata").is_file()  # a sharded folder, one file per rank
    assert len(list((ckpts / "step=2.ckpt").glob("*.distcp"))) == 2
    resumed = _fit(tmp_path / "resumed", tok, 4, ckpts / "step=2.ckpt")
    first = torch.load(ckpts / "step=2.ckpt" / "meta.pt", weights_only=True)
    assert first["global_step"] == 2
    for net in ("backbone", "ema"):
        for k, w in whole[net].items():
            torch.testing.assert_close(resumed[net][k], w, rtol=0, atol=0, msg=f"{net}.{k}")
    torch.manual_seed(0)
    init = tiny_backbone().state_dict()
    assert any(not torch.equal(init[k], w) for k, w in whole["backbone"].items())  # it trained
    # The export joins the EMA shards of the last checkpoint in one process.
    out = export_checkpoint(ckpts / "step=4.ckpt", tmp_path / "ema.safetensors")
    exported = load_file(str(out))
    assert set(exported) == set(whole["ema"])
    for k, w in whole["ema"].items():
        torch.testing.assert_close(exported[k], w, rtol=0, atol=0, msg=k)


def test_export_names_a_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="sharded checkpoint folder"):
        export_checkpoint(tmp_path, tmp_path / "x.safetensors")
