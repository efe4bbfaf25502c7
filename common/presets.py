"""Named model sizes ("presets") plus overrides: one idiom for the tokenizer and the backbone.

A model's constructor takes ``preset`` and the sizes a preset fixes default to ``None``: every
size left ``None`` comes from the preset, every size given overrides it. So a YAML config can
name a preset and change one thing::

    backbone:
      class_path: models.WindowedDiT
      init_args: {preset: L, num_classes: 101}
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any


def resolve_preset(
    presets: Mapping[str, Mapping[str, Any]],
    preset: str | None,
    *,
    model: str,
    **sizes: Any,
) -> dict[str, Any]:
    """``sizes`` with each ``None`` replaced by preset ``preset``'s value.

    Args:
        presets: the model's named sizes.
        preset: the chosen name, or ``None`` to give every size explicitly.
        model: the model's name, for error messages.
        **sizes: the constructor's size arguments (``None`` = take the preset's).

    Raises:
        KeyError: an unknown preset (the message lists the known ones).
        ValueError: a size that neither the arguments nor the preset give.
    """
    if preset is not None and preset not in presets:
        raise KeyError(f"unknown {model} preset {preset!r}; choose one of {sorted(presets)}")
    chosen = copy.deepcopy(dict(presets[preset])) if preset is not None else {}
    out = {name: chosen.get(name) if value is None else value for name, value in sizes.items()}
    missing = sorted(name for name, value in out.items() if value is None)
    if missing:
        raise ValueError(f"{model} needs {missing}: give them or a preset that sets them")
    return out
