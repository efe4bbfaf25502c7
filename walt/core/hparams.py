"""Checkpoint hyperparameters, checked and completed without letting the file choose code.

A checkpoint's or an export's saved hyperparameters name classes by ``class_path``; every one
is looked up in :mod:`common.registry` here, and anything unregistered is refused before
anything is imported. The backbone arguments that ``train.py`` links from other values are
re-derived here (LightningCLI does not save them). Nothing here needs Lightning.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from safetensors import safe_open

from common.registry import RefusedClassError, resolve
from tokenizer.network.vae import latent_size

# Hyperparameters a checkpoint carries but loading for inference does not rebuild.
_TRAINING_ONLY = ("optimizer", "lr_scheduler")
# Arguments built through the registry, and their registry kind.
BUILT = {"backbone": "backbone", "diffusion": "diffusion"}
# Module arguments that name files of the machine that runs, not part of the model: the run's
# outputs (export_path, media_dir) and local inputs (tokenizer, text_encoder, perceptual_weights).
# On resume the run's config and command line decide them, never the checkpoint (docs/security.md).
RUN_PATHS = ("export_path", "media_dir", "tokenizer", "text_encoder", "perceptual_weights")


def max_latent_size(num_frames: int, size: int | Sequence[int]) -> list[int]:
    """The backbone's ``max_latent_size`` for pixel clips of ``num_frames`` x ``size``
    (``train.py`` links it from the data; the loader re-derives it)."""
    height, width = (size, size) if isinstance(size, int) else size
    return list(latent_size(num_frames, height, width))


def with_linked_backbone_args(hparams: dict[str, Any]) -> dict[str, Any]:
    """Fill the backbone arguments that ``train.py`` links from other values.

    LightningCLI does not save link targets nested in a subclass's ``init_args``, so a
    checkpoint lacks ``in_channels`` and ``max_latent_size``; they are derived here from the
    saved ``latent_channels``, ``num_frames`` and ``size`` as in training, for backbones that take
    them. Saved values win.

    Raises:
        RefusedClassError: the backbone's class is not registered (nothing is imported).
    """
    spec = hparams.get("backbone")
    if not isinstance(spec, Mapping) or "class_path" not in spec:
        return hparams
    takes = _accepted_args(resolve("backbone", spec["class_path"]))
    linked = {}
    if "latent_channels" in hparams and "in_channels" in takes:
        linked["in_channels"] = hparams["latent_channels"]
    if "num_frames" in hparams and "size" in hparams and "max_latent_size" in takes:
        linked["max_latent_size"] = max_latent_size(hparams["num_frames"], hparams["size"])
    init_args = {**linked, **(spec.get("init_args") or {})}
    return {**hparams, "backbone": {**spec, "init_args": init_args}}


def _accepted_args(cls: type) -> set[str]:
    """The constructor argument names of ``cls``, following ``**kwargs`` up the base classes
    (as jsonargparse does: ``SpaceTimeUnet(**kwargs)`` passes them on to ``FactorizedUnet``)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is object or "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        names |= {p.name for p in params if p.kind is not p.VAR_KEYWORD and p.name != "self"}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return names


def _class_paths(value: Any, where: str) -> Iterator[tuple[str, Any]]:
    """Every ``(location, class_path)`` inside a nested hyperparameter value."""
    if isinstance(value, Mapping):
        if "class_path" in value:
            yield where, value["class_path"]
        for key, item in value.items():
            yield from _class_paths(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _class_paths(item, f"{where}[{i}]")


def checked_hparams(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """The checkpoint's hyperparameters with every named class checked against the registry.

    Raises:
        RefusedClassError: a class that is not registered (nothing has been imported).
    """
    hparams = dict(hparams)
    hparams.pop("_instantiator", None)  # never imported: the module is built here
    module_path = hparams.pop("_class_path", None)
    if module_path is not None:
        resolve("module", module_path)
    for key in _TRAINING_ONLY:
        hparams.pop(key, None)
    for key, value in hparams.items():
        for where, class_path in _class_paths(value, key):
            if where == key and key in BUILT:
                resolve(BUILT[key], class_path)
            else:
                raise RefusedClassError(
                    f"refusing class {class_path!r} at {where!r}: only the backbone and the "
                    "diffusion are built from a checkpoint"
                )
    return hparams


def resume_hparams(
    saved: Mapping[str, Any], current: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str], list[str]]:
    """What a resumed run takes from its checkpoint's (checked) hyperparameters.

    The checkpoint restores the model it holds (architecture, diffusion, sampling settings: its
    weights only fit those); the run's config and command line keep every :data:`RUN_PATHS`
    value. Returns the hyperparameters to merge, the keys where the checkpoint replaces a
    different configured value, and the path keys where the configured value is kept though the
    checkpoint's differs (both for a warning).
    """
    merged, replaced, kept = {}, [], []
    for key, value in saved.items():
        differs = key in current and plain_hparams(current[key]) != plain_hparams(value)
        if key in RUN_PATHS:
            kept += [key] if differs else []
            continue
        merged[key] = value
        replaced += [key] if differs else []
    return merged, sorted(replaced), sorted(kept)


def plain_hparams(value: Any) -> Any:
    """Hyperparameters as JSON-able data (Namespaces to dicts, tuples to lists, other objects
    to their ``repr``)."""
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    if isinstance(value, Mapping):
        return {str(k): plain_hparams(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_hparams(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def read_config(path: str | Path) -> dict[str, Any]:
    """The training config stored in a ``walt.export`` safetensors file's metadata."""
    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["config"])
