"""Every output of a run lives under ``trainer.default_root_dir``.

Lightning's convention: a checkpoint callback without ``dirpath`` and the default logger write
under ``trainer.default_root_dir``. The project extends it to every output path a config names:
a *relative* logger ``save_dir`` or checkpoint ``dirpath`` is taken relative to
``trainer.default_root_dir`` (``train.py`` rewrites them before the classes are built, since a
logger creates its folder before any hook could move it), and the modules resolve their own
relative output paths (``media_dir``, ``export_path``) the same way at run time. One override,
``--trainer.default_root_dir=X``, therefore moves a whole run. Absolute paths are kept.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# init_args of loggers and callbacks that name an output folder
_OUTPUT_ARGS = ("save_dir", "dirpath")


def under_root(root: str | os.PathLike | None, path: str | os.PathLike) -> Path:
    """``path`` if absolute, else ``root / path`` (``root`` None: the working directory)."""
    path = Path(path)
    return path if path.is_absolute() or root is None else Path(root) / path


def module_output_path(module: Any, path: str | os.PathLike | None) -> Path | None:
    """A LightningModule's output path resolved against its trainer's ``default_root_dir``."""
    if path is None:
        return None
    trainer = getattr(module, "_trainer", None)
    return under_root(trainer.default_root_dir if trainer is not None else None, path)


def root_output_paths(config: Any) -> None:
    """Rewrite the relative ``save_dir`` / ``dirpath`` of the loggers and callbacks of a parsed
    LightningCLI config (one subcommand's namespace) to lie under ``trainer.default_root_dir``."""
    trainer = config.get("trainer")
    if trainer is None:
        return
    root = trainer.get("default_root_dir")
    for spec in _specs(trainer.get("logger")) + _specs(trainer.get("callbacks")):
        init_args = spec.get("init_args")
        if init_args is None:
            continue
        for key in _OUTPUT_ARGS:
            value = init_args.get(key)
            if isinstance(value, (str, os.PathLike)):
                init_args[key] = str(under_root(root, value))


def _specs(value: Any) -> list[Any]:
    """The ``class_path`` / ``init_args`` entries of a logger or callback setting."""
    items = value if isinstance(value, list) else [value]
    return [v for v in items if v is not None and hasattr(v, "get") and v.get("class_path")]
