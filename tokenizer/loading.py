"""Save and load the tokenizer: safetensors exports and Lightning checkpoints.

The safetensors export holds the (EMA) VAE weights; its metadata holds the VAE ``config``
(constructor arguments plus ``latent_mean`` / ``latent_std``) as JSON under ``config``. A
Lightning ``.ckpt`` of ``TokenizerModule`` is read with ``torch.load(weights_only=True)``; its
EMA weights (``ema.module.*``) are used and its config comes from the ``config`` entry written
by ``TokenizerModule.on_save_checkpoint``. Every read goes through ``common.checkpoint_files``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from common.atomic import atomic_path
from common.checkpoint_files import read_checkpoint as read_any_checkpoint
from tokenizer.network.vae import CausalVAE

CONFIG_KEY = "config"


def config_key(container: Mapping[str, Any], path: str | Path) -> str:
    """The key holding the tokenizer config in an export's metadata or a checkpoint."""
    if CONFIG_KEY in container:
        return CONFIG_KEY
    raise ValueError(f"{path} has no '{CONFIG_KEY}' entry; not a tokenizer export or checkpoint")


def save_tokenizer(vae: CausalVAE, path: str | Path) -> Path:
    """Write ``vae``'s weights and config (with latent statistics) to a safetensors file."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in vae.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={CONFIG_KEY: json.dumps(vae.config), "format": "pt"})
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a Lightning checkpoint safely (tensors and plain containers only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer checkpoint not found: {path}")
    return read_any_checkpoint(path)


def vae_state_from_checkpoint(checkpoint: dict[str, Any], *, use_ema: bool = True) -> dict:
    """The VAE's state dict inside a ``TokenizerModule`` checkpoint (EMA weights by default)."""
    prefix = "ema.module." if use_ema else "vae."  # common.ema.EMA keeps its copy in .module
    sd = checkpoint["state_dict"]
    state = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    if not state:
        raise ValueError(
            f"checkpoint has no '{prefix}*' weights; is it a TokenizerModule checkpoint?"
        )
    return state


def load_tokenizer(path: str | Path, *, use_ema: bool = True, device: str = "cpu") -> CausalVAE:
    """Load a ``CausalVAE`` (eval mode) from a ``.safetensors`` export or a ``.ckpt``.

    Args:
        path: the export or the Lightning checkpoint of ``tokenizer.TokenizerModule``.
        use_ema: for checkpoints, take the EMA weights (default) instead of the raw ones.
        device: where to put the model.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file not found: {path}")
    if path.suffix == ".safetensors":
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        config = json.loads(metadata[config_key(metadata, path)])
        state = load_file(str(path))
    elif path.suffix == ".ckpt":
        checkpoint = read_checkpoint(path)
        config = checkpoint[config_key(checkpoint, path)]
        state = vae_state_from_checkpoint(checkpoint, use_ema=use_ema)
    else:
        raise ValueError(f"unsupported tokenizer file {path}: expected .safetensors or .ckpt")
    vae = CausalVAE.from_config(config)
    vae.load_state_dict(state, strict=True)
    return vae.to(device).eval()


def store_latent_stats(
    path: str | Path, mean: list[float], std: list[float], out: str | Path
) -> Path:
    """Write ``path`` (export or checkpoint) to ``out`` with new latent statistics."""
    path, out = Path(path), Path(out)
    if path.suffix == ".safetensors":
        vae = load_tokenizer(path)
        vae.set_latent_stats(mean, std)
        return save_tokenizer(vae, out)
    checkpoint = read_checkpoint(path)
    config = checkpoint.pop(config_key(checkpoint, path))
    CausalVAE.from_config(config).set_latent_stats(mean, std)  # validates
    config["latent_mean"] = [float(v) for v in mean]
    config["latent_std"] = [float(v) for v in std]
    checkpoint[CONFIG_KEY] = config
    with atomic_path(out) as tmp:
        torch.save(checkpoint, tmp)
    return out
