"""Named ``WindowedDiT`` sizes (W.A.L.T, Gupta et al. 2023, Table 8: L and XL; 16 heads).

Presets fix only the transformer size; conditioning (``num_classes``, ``text_dim``, ...) and
windows come from the caller's overrides, e.g. ``WindowedDiT(preset="L", num_classes=101)``
(the same as ``WindowedDiT.from_preset("L", num_classes=101)``), or in YAML
``init_args: {preset: L, num_classes: 101}`` (see :mod:`common.presets`).
"""

from __future__ import annotations

from typing import Any

from common.presets import resolve_preset

DIT_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"depth": 4, "hidden_size": 64, "num_heads": 4},
    "S": {"depth": 12, "hidden_size": 384, "num_heads": 6},
    "B": {"depth": 12, "hidden_size": 768, "num_heads": 12},
    "L": {"depth": 24, "hidden_size": 1024, "num_heads": 16},
    "XL": {"depth": 28, "hidden_size": 1152, "num_heads": 16},
}


def preset_config(name: str | None, **overrides: Any) -> dict[str, Any]:
    """The constructor kwargs of preset ``name`` updated with ``overrides``."""
    sizes = {key: overrides.get(key) for key in ("depth", "hidden_size", "num_heads")}
    return {**overrides, **resolve_preset(DIT_PRESETS, name, model="WindowedDiT", **sizes)}
