"""A sharded (FSDP2) checkpoint folder never runs code: not through ``walt.export`` nor through
``train.py fit --ckpt_path`` (common/checkpoint_files.py validates it before anyone reads it)."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import pytest
import torch

from common.checkpoint_files import UnsafeCheckpointError, read_checkpoint, read_sharded_index
from data.synthetic import write_synthetic
from tests.walt_fixtures import tiny_tokenizer_file
from walt.export import main as export_main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


class Payload:
    """Unpickling this object runs code: it writes ``marker`` (a stand-in for os.system)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


def _save_sharded(folder: Path, state: dict) -> None:
    import torch.distributed.checkpoint as dcp

    with warnings.catch_warnings():  # one process, no group: the intent
        warnings.simplefilter("ignore")
        dcp.save(state, checkpoint_id=str(folder))


def _hparams(tokenizer: str) -> dict:
    backbone = dict(preset="tiny", hidden_size=16, depth=1, num_heads=2, num_classes=3,
                    spatiotemporal_window=[3, 2, 2])
    return {"_class_path": "walt.lightning.WALTModule",
            "backbone": {"class_path": "models.WindowedDiT", "init_args": backbone},
            "diffusion": {"class_path": "walt.diffusion.GaussianDiffusion", "init_args": {}},
            "tokenizer": tokenizer, "latent_channels": 8, "num_frames": 9, "size": 16}


def hostile_folder(root: Path, attack: str) -> tuple[Path, Path]:
    """A sharded checkpoint folder whose loading with torch's reader would write a marker:
    ``index``: the ``.metadata`` itself is the payload; ``entry``: a valid index whose
    non-tensor entry (read by torch with ``weights_only=False``) is the payload."""
    folder, marker = root / "ckpt", root / "marker"
    state = {"state_dict": {"ema.module.w": torch.zeros(2)},
             "optimizer_states": {"0": {"lr": 0.1}}}
    if attack == "entry":
        state["state_dict"]["ema.module.evil"] = Payload(marker)
    _save_sharded(folder, state)
    if attack == "index":
        (folder / ".metadata").write_bytes(pickle.dumps(Payload(marker)))
    torch.save({"hyper_parameters": _hparams(str(root / "tok.safetensors")), "global_step": 1},
               folder / "meta.pt")
    assert not marker.exists()
    return folder, marker


@pytest.mark.parametrize("attack", ["index", "entry"])
def test_gate_refuses_a_hostile_sharded_folder(tmp_path, attack):
    folder, marker = hostile_folder(tmp_path, attack)
    with pytest.raises(UnsafeCheckpointError, match="nothing was executed"):
        read_sharded_index(folder)
    with pytest.raises(UnsafeCheckpointError):
        read_checkpoint(folder)
    assert not marker.exists()


@pytest.mark.parametrize("out", ["out.safetensors", "model"])
@pytest.mark.parametrize("attack", ["index", "entry"])
def test_export_of_a_hostile_sharded_folder_runs_nothing(tmp_path, attack, out):
    folder, marker = hostile_folder(tmp_path, attack)
    with pytest.raises((UnsafeCheckpointError, SystemExit)):
        export_main([str(folder), str(tmp_path / out)])
    assert not marker.exists()
    assert not (tmp_path / out).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # nothing written


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("assets")
    write_synthetic(str(root / "shapes-%06d.tar"), num_videos=4, num_images=4, frames=9, size=16,
                    object_size=6, samples_per_shard=100)
    return {"shards": str(root / "shapes-000000.tar"),
            "tokenizer": str(tiny_tokenizer_file(root / "tok.safetensors"))}


@pytest.mark.parametrize("attack", ["index", "entry"])
def test_resume_from_a_hostile_sharded_folder_runs_nothing(tmp_path, shards, attack):
    from train import main as cli_main

    folder, marker = hostile_folder(tmp_path, attack)
    run = tmp_path / "run"
    bb = "--model.init_args.backbone.init_args."
    args = ["fit", f"--config={CONFIGS / 'walt' / 'tiny_cpu.yaml'}",
            f"--config={CONFIGS / 'strategy' / 'fsdp2.yaml'}",
            "--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.max_steps=2",
            "--trainer.max_time=null", "--trainer.logger=false", "--trainer.callbacks=[]",
            "--trainer.enable_checkpointing=false", f"--trainer.default_root_dir={run}",
            f"--model.init_args.tokenizer={shards['tokenizer']}", f"{bb}hidden_size=16",
            f"{bb}depth=1", f"{bb}num_heads=2", f"{bb}spatiotemporal_window=[3, 2, 2]",
            f"--data.init_args.train_videos={shards['shards']}",
            f"--data.init_args.val_videos={shards['shards']}",
            f"--data.init_args.train_images={shards['shards']}",
            "--data.init_args.num_frames=9", "--data.init_args.size=16",
            "--data.init_args.batch_size=2", "--data.init_args.image_batch_size=2",
            "--data.init_args.num_workers=0", "--data.init_args.epoch_length=null",
            "--data.init_args.resampled=false", "--data.init_args.target_fps=null",
            "--data.init_args.load_pixels=true", f"--ckpt_path={folder}"]
    try:
        with pytest.raises(UnsafeCheckpointError):
            cli_main(args)
    finally:
        if torch.distributed.is_initialized():  # only reached by a run that got past the gate
            torch.distributed.destroy_process_group()
    assert not marker.exists()
    assert not run.exists()  # nothing written
