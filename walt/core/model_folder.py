"""The self-contained model folder that ``walt.export`` writes and every generating command reads.

Like diffusers' ``save_pretrained``, one folder holds everything generation needs, with no
pickles and no paths outside itself::

    model/
      config.json             {"format": "walt-model", "format_version": 1, "global_step": N,
                               "hyper_parameters": {backbone, diffusion, sampling settings,
                               conditioning, clip shape, ...}}
      backbone.safetensors    the backbone's EMA weights
      tokenizer.safetensors   the frozen tokenizer, its config and latent statistics in its
                              metadata (absent for pixel-space models)

The file names are fixed here, never read from ``config.json``, so a folder cannot point the
loader elsewhere. A text encoder trained in this project would be written beside them as
``text_encoder.safetensors`` (:data:`TEXT_ENCODER_FILE`); none is today: the pretrained encoder
a model was trained with stays the local folder named by ``hyper_parameters.text_encoder``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FORMAT, FORMAT_VERSION = "walt-model", 1
CONFIG_FILE = "config.json"
BACKBONE_FILE = "backbone.safetensors"
TOKENIZER_FILE = "tokenizer.safetensors"
TEXT_ENCODER_FILE = "text_encoder.safetensors"  # reserved: no text encoder is trained here yet


def is_model_folder(path: str | Path) -> bool:
    """True for a folder with a ``config.json`` of this format."""
    try:
        return read_model_config(path)["format"] == FORMAT
    except (OSError, ValueError, KeyError, TypeError):
        return False


def read_model_config(folder: str | Path) -> dict[str, Any]:
    """A model folder's ``config.json`` (plain JSON), checked for format and version."""
    path = Path(folder) / CONFIG_FILE
    config = json.loads(path.read_text())
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} config")
    if config.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} has format_version {config.get('format_version')!r}; this walt reads "
            f"{FORMAT_VERSION}"
        )
    if not isinstance(config.get("hyper_parameters"), dict):
        raise ValueError(f"{path} has no hyper_parameters")
    return config


def model_config(hparams: dict[str, Any], *, global_step: int) -> dict[str, Any]:
    """The ``config.json`` content for ``hparams`` (plain JSON data)."""
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "global_step": int(global_step),
            "hyper_parameters": hparams}


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield a hidden temporary folder beside ``path``; on success it replaces ``path``.

    A folder cannot be renamed onto a non-empty one, so an earlier folder is first moved aside
    (hidden) and removed once the new one is in place; on any exception the temporary folder is
    removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield tmp
        # mkdtemp's 0700 (and safetensors' 0600 files) would hide the model from others
        os.chmod(tmp, 0o777 & ~_umask())
        for file in tmp.iterdir():
            if file.is_file():
                os.chmod(file, 0o666 & ~_umask())
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
