"""Rebuild a ``WALTModule`` from a checkpoint, an export or a model folder, never letting the
file choose code.

Lightning's own ``load_from_checkpoint`` hands the saved hyperparameters to jsonargparse, which
imports whatever module a ``class_path`` names. Here every file is read through
:mod:`common.checkpoint_files` (weights-only; sharded folders validated first) or as
safetensors plus JSON, and every class it names is looked up in :mod:`common.registry`; an
unregistered name is refused before anything is imported or built. The backbone is first built
on the ``meta`` device and its parameter shapes compared with the stored ones, so a small file
whose config asks for a huge network is refused before any memory is allocated. The optimizer
and LR-scheduler factories are training-only and are not rebuilt (the module gets its
defaults); resume training with ``train.py fit --ckpt_path``, which builds from the config.

A checkpoint names its tokenizer by the path it had in training, relative to that run's working
folder; :func:`resolve_tokenizer` finds it next to the checkpoint when that path does not exist.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from common.checkpoint_files import read_checkpoint
from common.registry import build, resolve
from walt.core.backbone_inputs import ConditionConfig
from walt.core.hparams import BUILT, checked_hparams, read_config, with_linked_backbone_args
from walt.core.latents import PIXELS
from walt.core.model_folder import BACKBONE_FILE, TOKENIZER_FILE, read_model_config
from walt.core.sampling import SamplingConfig
from walt.core.super_resolution import SuperResolutionConfig

EMA_PREFIX = "ema.module."  # the EMA backbone's keys in a WALTModule state dict
# Folders above a checkpoint searched for its tokenizer: a run root sits at most this far
# above its checkpoints (ROOT/lightning_logs/version_N/checkpoints/x.ckpt), its tokenizer beside.
TOKENIZER_SEARCH_DEPTH = 4


def load_walt_checkpoint(
    path: str | Path, *, map_location: str | torch.device | None = "cpu", **overrides: Any
) -> Any:
    """Build the ``WALTModule`` of a checkpoint and load its weights.

    Args:
        path: the Lightning checkpoint (``.ckpt`` file or sharded folder) of a ``WALTModule``.
        map_location: where to load tensors.
        **overrides: constructor arguments that replace the saved ones (e.g. a ``backbone``
            object for checkpoints of modules built in Python, whose hyperparameters hold none).
    """
    state = read_checkpoint(path)
    sd = state["state_dict"]
    shapes = {k[len(EMA_PREFIX):]: tuple(v.shape) for k, v in sd.items() if k.startswith(EMA_PREFIX)}
    module = module_from_hparams(state.get("hyper_parameters") or {}, path, overrides,
                                 weight_shapes=shapes)
    module.on_load_checkpoint(state)
    module.load_state_dict(state["state_dict"])
    return module.to(map_location) if map_location is not None else module


def load_walt_module(
    path: str | Path, *, map_location: str | torch.device | None = "cpu", **overrides: Any
) -> Any:
    """A ``WALTModule`` from a Lightning checkpoint, a ``walt.export`` model folder or a
    single-file ``walt.export`` safetensors (its EMA backbone weights become both the backbone
    and the EMA). Classes are resolved as in :func:`load_walt_checkpoint`."""
    folder = Path(path)
    if folder.is_dir() and (folder / BACKBONE_FILE).is_file():
        config = read_model_config(folder)
        hparams = dict(config["hyper_parameters"])
        if (folder / TOKENIZER_FILE).is_file():
            hparams["tokenizer"] = str(folder / TOKENIZER_FILE)  # never a path outside the folder
        elif hparams.get("tokenizer") not in (None, PIXELS):
            raise FileNotFoundError(f"model folder {folder} lacks its {TOKENIZER_FILE}")
        return _module_from_safetensors(hparams, folder / BACKBONE_FILE, folder, map_location,
                                        overrides)
    if Path(path).suffix != ".safetensors":  # a checkpoint file or sharded folder
        return load_walt_checkpoint(path, map_location=map_location, **overrides)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"export {str(path)!r} does not exist")
    return _module_from_safetensors(read_config(path), path, path, map_location, overrides)


def _module_from_safetensors(hparams: Mapping[str, Any], weights_path: Path, source: Path,
                             map_location: Any, overrides: dict[str, Any]) -> Any:
    module = module_from_hparams(hparams, source, overrides,
                                 weight_shapes=safetensors_shapes(weights_path))
    weights = load_file(str(weights_path), device=str(map_location or "cpu"))
    module.backbone.load_state_dict(weights)
    module.ema.module.load_state_dict(weights)
    return module.to(map_location) if map_location is not None else module


def safetensors_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape in a safetensors file, read from its header (nothing loaded)."""
    with safe_open(str(path), framework="pt") as f:
        return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}


def build_backbone_checked(spec: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]],
                           source: str | Path) -> torch.nn.Module:
    """Build the registered backbone ``spec`` names, after checking on the ``meta`` device
    (no memory) that its parameters have exactly the stored ``shapes``."""
    with torch.device("meta"):
        probe = build("backbone", spec)
    wanted = {k: tuple(v.shape) for k, v in probe.state_dict().items()}
    if wanted != dict(shapes):
        differ = sorted(k for k in wanted.keys() & shapes.keys() if wanted[k] != shapes[k])
        lines = [f"{k}: config {wanted[k]} vs stored {shapes[k]}" for k in differ[:5]]
        lines += [f"missing from the file: {k}" for k in sorted(wanted.keys() - shapes.keys())[:3]]
        lines += [f"not in the config's network: {k}"
                  for k in sorted(shapes.keys() - wanted.keys())[:3]]
        raise ValueError(
            f"{source}: the config's backbone ({_count(wanted)} parameters) does not match the "
            f"stored weights ({_count(shapes)}); nothing was built:\n  " + "\n  ".join(lines))
    return build("backbone", spec)


def _count(shapes: Mapping[str, tuple[int, ...]]) -> str:
    total = sum(torch.Size(s).numel() for s in shapes.values())
    return f"{total:,}"


def resolve_tokenizer(recorded: Any, source: str | Path) -> Any:
    """The tokenizer file a checkpoint at ``source`` names by ``recorded``: that path if it
    exists, else the first existing path made of a tail of it under the checkpoint's folder or
    one of its :data:`TOKENIZER_SEARCH_DEPTH` parents (nearest, longest first), with a warning
    naming the path used. ``None`` and ``"pixels"`` are returned as they are.

    Raises:
        FileNotFoundError: none exists; every path tried is listed.
    """
    if recorded is None or str(recorded) == PIXELS or Path(recorded).exists():
        return recorded
    parts = Path(recorded).parts
    tails = [Path(*parts[i:]) for i in range(1 if Path(recorded).is_absolute() else 0, len(parts))]
    here = Path(source).resolve()
    folders = [here.parent, *list(here.parent.parents)[:TOKENIZER_SEARCH_DEPTH]]
    tried = [Path(recorded)] + [folder / tail for folder in folders for tail in tails]
    for candidate in tried[1:]:
        if candidate.is_file():
            warnings.warn(f"{source}: its tokenizer {str(recorded)!r} does not exist here; "
                          f"using {candidate} (found next to the checkpoint)", stacklevel=3)
            return str(candidate)
    raise FileNotFoundError(
        f"{source}: tokenizer checkpoint {str(recorded)!r} does not exist, nor next to the "
        "checkpoint; tried:\n  " + "\n  ".join(map(str, tried)))


def module_from_hparams(saved: Mapping[str, Any], path: str | Path, overrides: dict[str, Any],
                        *, weight_shapes: Mapping[str, tuple[int, ...]] | None = None) -> Any:
    """A ``WALTModule`` from saved hyperparameters (weights not loaded); ``path`` names their
    file in errors and anchors the tokenizer search. With ``weight_shapes`` (the EMA backbone's
    stored shapes) the backbone is checked against them before it is built."""
    hparams = with_linked_backbone_args(checked_hparams(saved))
    for key, kind in BUILT.items():
        if key not in overrides:
            if key not in hparams:
                raise ValueError(f"{path} saves no {key!r}; pass {key}=... to load it")
            if key == "backbone" and weight_shapes is not None:
                hparams[key] = build_backbone_checked(hparams[key], weight_shapes, path)
            else:
                hparams[key] = build(kind, hparams[key])
    if "tokenizer" not in overrides:
        hparams["tokenizer"] = resolve_tokenizer(hparams.get("tokenizer"), path)
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
