"""Export the EMA backbone of a W.A.L.T checkpoint as safetensors, with its config.

    python -m walt.export CKPT OUT.safetensors

The file holds the EMA weights of the backbone and, in its metadata, the JSON of the training
config (``backbone`` and ``diffusion`` class paths and arguments, tokenizer path, clip shape), so
``load_backbone`` rebuilds the network without the checkpoint or any pickled object.

``CKPT`` may also be the folder of a sharded (FSDP2, distributed) checkpoint: the EMA shards are
read back and joined in this one process, with no process group (docs/scaling.md).
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from common.atomic import atomic_path
from common.registry import build
from walt.core.hparams import read_config, with_linked_backbone_args


def export_checkpoint(ckpt: str | Path, out: str | Path) -> Path:
    """Write the EMA backbone weights of ``ckpt`` plus its hyperparameters to ``out``."""
    state = _read_checkpoint(Path(ckpt))
    prefix = "ema.module."
    weights = {
        k[len(prefix) :]: v.contiguous() for k, v in state["state_dict"].items() if k.startswith(prefix)
    }
    if not weights:
        raise ValueError(f"{ckpt} holds no EMA weights (keys starting with {prefix!r})")
    hparams = with_linked_backbone_args(_plain(state.get("hyper_parameters", {})))
    meta = {"config": json.dumps(hparams), "global_step": str(state.get("global_step", 0))}
    out = Path(out)
    with atomic_path(out) as tmp:
        save_file(weights, str(tmp), metadata=meta)
    return out


def _read_checkpoint(ckpt: Path) -> dict[str, Any]:
    """A Lightning checkpoint file, or a sharded checkpoint folder joined into the same layout
    (its ``meta.pt`` holds everything but the weights and optimizer states)."""
    if ckpt.is_file():
        return torch.load(ckpt, map_location="cpu", weights_only=True)
    if not (ckpt / ".metadata").is_file() or not (ckpt / "meta.pt").is_file():
        raise FileNotFoundError(
            f"checkpoint {str(ckpt)!r} is neither a checkpoint file nor a sharded checkpoint folder"
        )
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict_from_keys

    state = torch.load(ckpt / "meta.pt", map_location="cpu", weights_only=True)
    # Only the weights: the optimizer states in the same folder are never read.
    with warnings.catch_warnings():  # reading in one process, without a group, is the intent
        warnings.filterwarnings("ignore", message="torch.distributed is unavailable")
        sd = _load_state_dict_from_keys({"state_dict"}, checkpoint_id=str(ckpt))["state_dict"]
    state["state_dict"] = sd
    return state


def load_backbone(path: str | Path) -> nn.Module:
    """Rebuild the backbone described by an export and load its EMA weights.

    The backbone class comes from ``common.registry`` (kind ``"backbone"``); any other
    ``class_path`` in the file is refused before anything is imported or built.
    """
    config = with_linked_backbone_args(read_config(path))
    spec = config.get("backbone")
    if not isinstance(spec, dict) or "class_path" not in spec:
        raise ValueError(f"{path} has no backbone class_path in its config")
    backbone = build("backbone", spec)
    weights = {}
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():
            weights[key] = f.get_tensor(key)
    backbone.load_state_dict(weights)
    return backbone.eval()


def _plain(value: Any) -> Any:
    """Hyperparameters as JSON-able data (tuples to lists, Namespaces to dicts)."""
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Export EMA backbone weights as safetensors.")
    parser.add_argument("ckpt", help="Lightning checkpoint of a WALTModule")
    parser.add_argument("out", help="output .safetensors path")
    args = parser.parse_args(argv)
    print(export_checkpoint(args.ckpt, args.out))


if __name__ == "__main__":
    main()
