"""Export a W.A.L.T checkpoint: a self-contained model folder, or the EMA backbone alone.

    python -m walt.export CKPT OUT_FOLDER          # the model folder (walt.core.model_folder)
    python -m walt.export CKPT OUT.safetensors     # the EMA backbone and its config only

The model folder holds the backbone's EMA weights, the tokenizer with its latent statistics and
the config (diffusion, sampling settings, conditioning, clip shape) as safetensors plus JSON; copied
alone to another machine it generates what the checkpoint did (``walt.generate OUT_FOLDER``).
The single ``.safetensors`` file holds the EMA weights and, in its metadata, the JSON of the
training config; its tokenizer stays the file the config names. Neither holds a pickled object;
``load_backbone`` and ``walt.core.loading.load_walt_module`` rebuild the network from the
registry (``common.registry``).

``CKPT`` may be a Lightning checkpoint file or the folder of a sharded (FSDP2) checkpoint, read
through ``common.checkpoint_files`` (validated, weights-only; docs/security.md). ``OUT`` may not
be the checkpoint itself nor any other existing file or folder but an earlier export, which is
replaced atomically.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from common.atomic import atomic_path
from common.checkpoint_files import read_checkpoint
from tokenizer import load_tokenizer, save_tokenizer
from walt.core.hparams import (
    checked_hparams,
    plain_hparams,
    read_config,
    with_linked_backbone_args,
)
from walt.core.latents import PIXELS
from walt.core.loading import (
    EMA_PREFIX,
    build_backbone_checked,
    resolve_tokenizer,
    safetensors_shapes,
)
from walt.core.model_folder import (
    BACKBONE_FILE,
    CONFIG_FILE,
    TOKENIZER_FILE,
    atomic_folder,
    is_model_folder,
    model_config,
)


def export_checkpoint(ckpt: str | Path, out: str | Path) -> Path:
    """Write the export of ``ckpt`` to ``out``: a model folder, or for a ``.safetensors`` name
    the EMA backbone weights with their config. Refuses (before reading) an ``out`` that is the
    checkpoint or any existing file or folder but an earlier export of the same kind."""
    ckpt, out = Path(ckpt), Path(out)
    single_file = out.suffix == ".safetensors"
    check_output(ckpt, out, single_file=single_file)
    state = read_checkpoint(ckpt)
    weights = {k[len(EMA_PREFIX):]: v.contiguous()
               for k, v in state["state_dict"].items() if k.startswith(EMA_PREFIX)}
    if not weights:
        raise ValueError(f"{ckpt} holds no EMA weights (keys starting with {EMA_PREFIX!r})")
    hparams = with_linked_backbone_args(plain_hparams(state.get("hyper_parameters", {})))
    step = int(state.get("global_step", 0))
    if single_file:
        with atomic_path(out) as tmp:
            save_file(weights, str(tmp), metadata={"config": json.dumps(hparams),
                                                   "global_step": str(step)})
        return out
    hparams = checked_hparams(hparams)  # training-only factories and Lightning's markers go
    tokenizer = resolve_tokenizer(hparams.get("tokenizer"), ckpt)
    with atomic_folder(out) as tmp:
        save_file(weights, str(tmp / BACKBONE_FILE), metadata={"format": "pt"})
        if tokenizer not in (None, PIXELS):
            save_tokenizer(load_tokenizer(tokenizer), tmp / TOKENIZER_FILE)
            hparams["tokenizer"] = TOKENIZER_FILE
        config = model_config(hparams, global_step=step)
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return out


def check_output(ckpt: Path, out: Path, *, single_file: bool) -> None:
    """Refuse an export target that would replace the checkpoint or anything but an export."""
    if out.exists() and ckpt.exists() and out.resolve() == ckpt.resolve():
        raise ValueError(f"refusing to export {ckpt} onto itself; give another output path")
    if not out.exists():
        return
    if single_file and out.is_file() and _is_backbone_export(out):
        return
    if not single_file and out.is_dir() and (is_model_folder(out) or not any(out.iterdir())):
        return
    kind = "a single-file export (.safetensors)" if single_file else "a model folder"
    raise FileExistsError(
        f"refusing to write {kind} to {out}: it exists and is not an earlier one (a checkpoint "
        "or other data would be lost); give a new path or remove it first")


def _is_backbone_export(path: Path) -> bool:
    try:
        with safe_open(str(path), framework="pt") as f:
            return "config" in (f.metadata() or {})
    except Exception:  # not a safetensors file at all
        return False


def load_backbone(path: str | Path) -> nn.Module:
    """Rebuild the backbone described by a single-file export and load its EMA weights.

    The backbone class comes from ``common.registry`` (kind ``"backbone"``); any other
    ``class_path`` in the file is refused before anything is imported or built, and a config
    whose network does not match the stored shapes before any memory is allocated.
    """
    config = with_linked_backbone_args(read_config(path))
    spec = config.get("backbone")
    if not isinstance(spec, dict) or "class_path" not in spec:
        raise ValueError(f"{path} has no backbone class_path in its config")
    backbone = build_backbone_checked(spec, safetensors_shapes(path), path)
    backbone.load_state_dict(load_file(str(path)))
    return backbone.eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ckpt", help="Lightning checkpoint of a WALTModule (file or sharded folder)")
    parser.add_argument("out", help="output model folder, or OUT.safetensors for the backbone only")
    args = parser.parse_args(argv)
    try:
        print(export_checkpoint(args.ckpt, args.out))
    except (FileExistsError, ValueError) as e:
        raise SystemExit(f"walt.export: {e}") from e


if __name__ == "__main__":
    main()
