"""Hyperparameters that load with ``torch.load(..., weights_only=True)``."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import asdict, is_dataclass
from typing import Any


def keep_plain_hparams(hparams: MutableMapping[str, Any]) -> None:
    """Keep only plain data in a module's saved hyperparameters, so checkpoints load with
    ``weights_only=True`` and never choose what code runs.

    Objects passed directly from Python (a built backbone, an optimizer factory) are dropped;
    under LightningCLI the same entries are plain ``class_path`` / ``init_args`` dicts and are
    kept. Dataclasses become dicts.
    """
    for key, value in list(hparams.items()):
        if is_dataclass(value) and not isinstance(value, type):
            hparams[key] = asdict(value)
        elif not _is_plain(value):
            del hparams[key]


def _is_plain(value: Any) -> bool:
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    return value is None or isinstance(value, (str, int, float, bool))
