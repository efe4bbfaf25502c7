"""Rebuild a ``WALTModule`` from a Lightning checkpoint without letting the file choose code.

Lightning's own ``load_from_checkpoint`` hands the saved hyperparameters to jsonargparse, which
imports whatever module a ``class_path`` names. Here the checkpoint is read with
``torch.load(weights_only=True)`` and every class it names is looked up in
:mod:`common.registry`; an unregistered name is refused before anything is imported or built.
The optimizer and LR-scheduler factories are training-only and are not rebuilt (the module gets
its defaults); resume training with ``train.py fit --ckpt_path``, which builds from the config.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from common.registry import build, resolve
from walt.core.backbone_inputs import ConditionConfig
from walt.core.hparams import BUILT, checked_hparams, read_config, with_linked_backbone_args
from walt.core.sampling import SamplingConfig
from walt.core.super_resolution import SuperResolutionConfig


def load_walt_checkpoint(
    path: str | Path, *, map_location: str | torch.device | None = "cpu", **overrides: Any
) -> Any:
    """Build the ``WALTModule`` of a checkpoint and load its weights.

    Args:
        path: the Lightning checkpoint (``.ckpt``) of a ``WALTModule``.
        map_location: where to load tensors.
        **overrides: constructor arguments that replace the saved ones (e.g. a ``backbone``
            object for checkpoints of modules built in Python, whose hyperparameters hold none).
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    state = torch.load(path, map_location=map_location, weights_only=True)
    module = module_from_hparams(state.get("hyper_parameters") or {}, path, overrides)
    module.on_load_checkpoint(state)
    module.load_state_dict(state["state_dict"])
    return module


def load_walt_module(
    path: str | Path, *, map_location: str | torch.device | None = "cpu", **overrides: Any
) -> Any:
    """A ``WALTModule`` from a Lightning checkpoint or a ``walt.export`` safetensors file (its
    EMA backbone weights become both the backbone and the EMA; the tokenizer comes from the
    path its config names). Classes are resolved as in :func:`load_walt_checkpoint`."""
    if Path(path).suffix != ".safetensors":
        return load_walt_checkpoint(path, map_location=map_location, **overrides)
    if not Path(path).is_file():
        raise FileNotFoundError(f"export {str(path)!r} does not exist")
    module = module_from_hparams(read_config(path), path, overrides)
    weights = load_file(str(path), device=str(map_location or "cpu"))
    module.backbone.load_state_dict(weights)
    module.ema.module.load_state_dict(weights)
    return module


def module_from_hparams(saved: Mapping[str, Any], path: str | Path, overrides: dict[str, Any]) -> Any:
    """A ``WALTModule`` from saved hyperparameters (weights not loaded); ``path`` names their
    file in errors."""
    hparams = with_linked_backbone_args(checked_hparams(saved))
    for key, kind in BUILT.items():
        if key not in overrides:
            if key not in hparams:
                raise ValueError(f"{path} saves no {key!r}; pass {key}=... to load it")
            hparams[key] = build(kind, hparams[key])
    if isinstance(hparams.get("conditioning"), Mapping):
        hparams["conditioning"] = ConditionConfig(**hparams["conditioning"])
    if isinstance(hparams.get("super_resolution"), Mapping):
        hparams["super_resolution"] = SuperResolutionConfig(**hparams["super_resolution"])
    if isinstance(hparams.get("sampling"), Mapping):
        hparams["sampling"] = SamplingConfig(**hparams["sampling"])
    # Resolved through the registry at call time, so that module.py may import this file.
    module_cls = resolve("module", "WALTModule")
    params = inspect.signature(module_cls.__init__).parameters
    unknown = sorted(set(hparams) - set(params))
    if unknown:
        raise ValueError(f"{path} has hyperparameters WALTModule does not take: {unknown}")
    return module_cls(**{**hparams, **overrides})
