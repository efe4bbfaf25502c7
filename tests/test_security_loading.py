"""A checkpoint or an export never chooses what code runs: classes come from common.registry."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from common import registry
from common.registry import RefusedClassError, register_backbone, registered, resolve
from models import WindowedDiT
from walt.export import load_backbone
from walt.generate import main as generate_main
from walt.lightning import WALTModule

EVIL = """
from pathlib import Path
Path(__file__).with_name("pwned").write_text("imported")


class Backdoor:
    def __init__(self, **kwargs):
        Path(__file__).with_name("pwned").write_text("built")
"""


def _tiny_backbone_spec() -> dict:
    args = dict(hidden_size=16, depth=1, num_heads=2, max_latent_size=[1, 2, 2],
                spatiotemporal_window=[1, 2, 2])
    return {"class_path": "models.WindowedDiT", "init_args": args}


def _checkpoint(tmp_path, **hparams) -> str:
    base = {
        "_class_path": "walt.lightning.WALTModule",
        "_instantiator": "lightning.pytorch.cli.instantiate_module",
        "backbone": _tiny_backbone_spec(),
        "diffusion": {"class_path": "walt.diffusion.GaussianDiffusion", "init_args": {}},
        "tokenizer": str(tmp_path / "tokenizer.safetensors"),
    }
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {**base, **hparams}}, path)
    return str(path)


@pytest.fixture
def evil_cwd(tmp_path, monkeypatch):
    """An ``evil.py`` in the current folder, importable (as under ``python -m``)."""
    (tmp_path / "evil.py").write_text(EVIL)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "evil", raising=False)
    return tmp_path


@pytest.mark.parametrize(
    "hparams",
    [
        {"backbone": {"class_path": "evil.Backdoor", "init_args": {}}},
        {"diffusion": {"class_path": "evil.Backdoor"}},
        {"_class_path": "evil.Backdoor"},
        {"conditioning": {"class_path": "evil.Backdoor"}},
    ],
    ids=["backbone", "diffusion", "module", "elsewhere"],
)
def test_checkpoint_cannot_import_a_module_from_cwd(evil_cwd, hparams):
    ckpt = _checkpoint(evil_cwd, **hparams)
    with pytest.raises(RefusedClassError, match="evil.Backdoor"):
        generate_main([ckpt, "--out", str(evil_cwd / "out")])
    with pytest.raises(RefusedClassError, match="evil.Backdoor"):
        WALTModule.load_from_checkpoint(ckpt)
    assert not (evil_cwd / "pwned").exists()
    assert "evil" not in sys.modules
    assert not (evil_cwd / "out").exists()


@pytest.mark.parametrize("key", ["backbone", "optimizer"])
def test_train_cli_ckpt_path_cannot_import_a_module_from_cwd(evil_cwd, key):
    from train import main as cli_main

    config = Path(__file__).resolve().parents[1] / "configs" / "walt" / "tiny_cpu.yaml"
    ckpt = _checkpoint(evil_cwd, **{key: {"class_path": "evil.Backdoor", "init_args": {}}})
    if key == "backbone":
        with pytest.raises(RefusedClassError, match="evil.Backdoor"):
            cli_main(["predict", f"--config={config}", f"--ckpt_path={ckpt}"])
    else:  # training-only factories are never taken from the checkpoint
        # The run gets past the checkpoint and stops later, on the missing tokenizer file.
        with pytest.raises(ValueError, match="tokenizer checkpoint .* does not exist"):
            cli_main(["predict", f"--config={config}", f"--ckpt_path={ckpt}",
                      "--trainer.accelerator=cpu", "--trainer.logger=false"])
    assert not (evil_cwd / "pwned").exists()
    assert "evil" not in sys.modules


def _export(path, config: dict) -> None:
    save_file({"w": torch.zeros(1)}, str(path), metadata={"config": json.dumps(config)})


def test_export_cannot_call_a_project_function(tmp_path):
    target = tmp_path / "written.safetensors"
    spec = {
        "class_path": "walt.export.save_file",
        "init_args": {"tensors": {}, "filename": str(target)},
    }
    _export(tmp_path / "bad.safetensors", {"backbone": spec})
    with pytest.raises(RefusedClassError, match="walt.export.save_file"):
        load_backbone(tmp_path / "bad.safetensors")
    assert not target.exists()


def test_export_cannot_import_a_module_from_cwd(evil_cwd):
    _export(evil_cwd / "bad.safetensors", {"backbone": {"class_path": "evil.Backdoor"}})
    with pytest.raises(RefusedClassError, match="evil.Backdoor"):
        load_backbone(evil_cwd / "bad.safetensors")
    assert not (evil_cwd / "pwned").exists() and "evil" not in sys.modules


def test_registered_names_and_class_paths_resolve():
    for name in ("WindowedDiT", "models.WindowedDiT", "models.dit.WindowedDiT"):
        assert resolve("backbone", name) is WindowedDiT
    with pytest.raises(RefusedClassError, match="WindowedDiT"):
        resolve("diffusion", "models.WindowedDiT")  # right class, wrong kind
    with pytest.raises(ValueError, match="registry kind"):
        resolve("optimizer", "torch.optim.AdamW")


def test_user_backbone_registers_in_code(tmp_path, monkeypatch):
    class MyDiT(torch.nn.Module):
        def __init__(self, *, width: int) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.full((width,), 2.0))

    with pytest.raises(RefusedClassError, match="MyDiT"):
        resolve("backbone", "MyDiT")
    # Register into a copy, so the class does not outlive the test.
    monkeypatch.setattr(registry, "_CLASSES", {k: dict(v) for k, v in registry._CLASSES.items()})
    register_backbone("MyDiT", MyDiT)
    assert "MyDiT" in registered("backbone")
    save_file({"w": torch.ones(3)}, str(tmp_path / "my.safetensors"),
              metadata={"config": json.dumps({"backbone": {"class_path": "MyDiT",
                                                           "init_args": {"width": 3}}})})
    net = load_backbone(tmp_path / "my.safetensors")
    assert isinstance(net, MyDiT) and torch.equal(net.w, torch.ones(3))
