"""The one gate every checkpoint read goes through: tensors and plain data, never code.

A pickle runs whatever callable it names, so nothing the project loads is unpickled freely:

- a plain torch file (weights, saved samples) is read with ``torch.load(weights_only=True)``
  (:func:`read_weights_file`);
- a Lightning checkpoint *file* is read with ``torch.load(weights_only=True)``;
- a sharded (FSDP2, torch.distributed.checkpoint) checkpoint *folder* is validated before
  anything else reads it: its ``.metadata`` (a plain pickle that torch's own reader would
  ``pickle.load``) is read by :class:`_MetadataUnpickler`, which resolves only the few
  torch.distributed.checkpoint record classes, torch dtypes and sizes, and refuses every other
  global before it is imported; every entry must point at a shard file inside the folder,
  untransformed; every non-tensor entry (optimizer hyperparameters, which torch's reader loads
  with ``weights_only=False``) must load with ``weights_only=True``. Its ``meta.pt`` is read
  weights-only and its tensors are joined here from the validated index, each shard read
  weights-only.

A folder that fails any check is refused with :class:`UnsafeCheckpointError`, naming the file
and the reason. See docs/security.md for the threat model.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.distributed.checkpoint.metadata import (
    BytesStorageMetadata,
    Metadata,
    TensorStorageMetadata,
)

SHARDED_INDEX = ".metadata"  # torch.distributed.checkpoint's index of a sharded folder
SHARDED_META = "meta.pt"  # Lightning's non-tensor state of a sharded folder

_DCP = "torch.distributed.checkpoint"
# The only globals a sharded folder's index may name: the records torch.distributed.checkpoint
# writes, and the torch and pathlib values they hold. Everything else is refused unimported.
_ALLOWED_GLOBALS = {
    (f"{_DCP}.metadata", name)
    for name in ("Metadata", "MetadataIndex", "StorageMeta", "TensorProperties",
                 "TensorStorageMetadata", "ChunkStorageMetadata", "BytesStorageMetadata",
                 "_MEM_FORMAT_ENCODING")
} | {
    (f"{_DCP}.filesystem", "_StorageInfo"),
    ("torch", "Size"),
    ("torch.serialization", "_get_layout"),
    *((module, name) for module in ("pathlib", "pathlib._local")
      for name in ("PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath")),
}


class UnsafeCheckpointError(ValueError):
    """A checkpoint that could run code or read outside its folder if loaded; nothing was."""


class _MetadataUnpickler(pickle.Unpickler):
    """Unpickles a sharded folder's ``.metadata`` resolving only :data:`_ALLOWED_GLOBALS` and
    torch dtypes (the pattern of Python's "Restricting Globals")."""

    def __init__(self, file: io.BufferedReader, path: Path) -> None:
        super().__init__(file)
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise UnsafeCheckpointError(
            f"refusing {self.path}: its index names {module}.{name}, which a sharded checkpoint "
            "index never holds (loading it could run code); nothing was executed"
        )


def is_sharded_folder(path: str | Path) -> bool:
    """True for a folder holding a torch.distributed.checkpoint index."""
    return (Path(path) / SHARDED_INDEX).is_file()


def read_sharded_index(folder: str | Path) -> Metadata:
    """The validated index of a sharded checkpoint folder (see the module docstring).

    Raises:
        UnsafeCheckpointError: anything but the records torch writes, an entry outside the
            folder or transformed, or a non-tensor entry that is not weights-only loadable.
    """
    folder = Path(folder)
    path = folder / SHARDED_INDEX
    try:
        with open(path, "rb") as f:
            index = _MetadataUnpickler(f, path).load()
    except UnsafeCheckpointError:
        raise
    except Exception as e:  # a truncated or garbled index
        raise UnsafeCheckpointError(f"refusing {path}: not a readable checkpoint index ({e})") from e
    if not isinstance(index, Metadata) or not isinstance(index.storage_data, dict):
        raise UnsafeCheckpointError(f"refusing {path}: not a torch.distributed.checkpoint index")
    for key, entry in index.state_dict_metadata.items():
        if not isinstance(entry, (TensorStorageMetadata, BytesStorageMetadata)):
            raise UnsafeCheckpointError(f"refusing {path}: entry {key!r} is not a tensor or bytes")
    for where, info in index.storage_data.items():
        _shard_file(folder, info, where)
        if isinstance(index.state_dict_metadata.get(where.fqn), BytesStorageMetadata):
            _weights_only_value(folder, info, where)
    return index


def read_weights_file(path: str | Path) -> Any:
    """A plain torch file (a state dict, saved tensors such as ``samples.pt``) read
    weights-only onto the CPU: tensors and plain containers, never code."""
    return torch.load(path, map_location="cpu", weights_only=True)


def read_checkpoint(path: str | Path, *, weights: bool = True) -> dict[str, Any]:
    """A Lightning checkpoint as a dict: a file read weights-only, or a sharded folder validated
    and joined into the same layout (``meta.pt`` plus the ``state_dict`` tensors).

    Args:
        path: a checkpoint file or a sharded checkpoint folder.
        weights: join the folder's ``state_dict`` (False: its ``meta.pt`` only; a file is
            always read whole).
    """
    path = Path(path)
    if path.is_file():
        return read_weights_file(path)
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if not is_sharded_folder(path) or not (path / SHARDED_META).is_file():
        raise FileNotFoundError(
            f"checkpoint {str(path)!r} is neither a checkpoint file nor a sharded checkpoint "
            f"folder (one with {SHARDED_INDEX} and {SHARDED_META})"
        )
    index = read_sharded_index(path)
    state = read_weights_file(path / SHARDED_META)
    if weights:
        state["state_dict"] = dict(_joined_tensors(path, index, "state_dict"))
    return state


def _joined_tensors(folder: Path, index: Metadata, top: str) -> Iterator[tuple[str, torch.Tensor]]:
    """The whole tensors under ``top`` (e.g. ``"state_dict"``), each assembled from its
    chunks; only the shards of these tensors are read (never the optimizer states)."""
    for fqn, entry in index.state_dict_metadata.items():
        path = (index.planner_data or {}).get(fqn) or tuple(fqn.split(".", 1))
        if len(path) != 2 or path[0] != top or not isinstance(entry, TensorStorageMetadata):
            continue
        whole = torch.empty(tuple(entry.size), dtype=entry.properties.dtype)
        for i, chunk in enumerate(entry.chunks):
            where = next((k for k in index.storage_data
                          if k.fqn == fqn and tuple(k.offset or ()) == tuple(chunk.offsets)), None)
            if where is None:
                raise UnsafeCheckpointError(f"{folder}: chunk {i} of {fqn!r} has no shard")
            part = _weights_only_value(folder, index.storage_data[where], where)
            if not isinstance(part, torch.Tensor):
                raise UnsafeCheckpointError(f"{folder}: chunk {i} of {fqn!r} is not a tensor")
            view = whole
            for dim, (start, length) in enumerate(zip(chunk.offsets, chunk.sizes)):
                view = view.narrow(dim, start, length)
            view.copy_(part.reshape(view.shape))
        yield str(path[1]), whole


def _shard_file(folder: Path, info: Any, where: Any) -> Path:
    """The shard file an index entry points at, refused unless a plain file in the folder."""
    name = getattr(info, "relative_path", None)
    if (not isinstance(name, str) or Path(name).name != name or name in ("", ".", "..")
            or not (folder / name).is_file()):
        raise UnsafeCheckpointError(
            f"refusing {folder}: entry {where.fqn!r} points at {name!r}, not a shard file "
            "in the folder"
        )
    if getattr(info, "transform_descriptors", None):
        raise UnsafeCheckpointError(
            f"refusing {folder}: entry {where.fqn!r} is stored transformed "
            f"({info.transform_descriptors}); the project writes plain shards"
        )
    return folder / name


def _weights_only_value(folder: Path, info: Any, where: Any) -> Any:
    """One stored value, read weights-only from its byte range."""
    path = _shard_file(folder, info, where)
    with open(path, "rb") as f:
        f.seek(int(info.offset))
        data = f.read(int(info.length))
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:
        raise UnsafeCheckpointError(
            f"refusing {folder}: entry {where.fqn!r} in {info.relative_path} does not load "
            f"weights-only ({type(e).__name__}); nothing was executed"
        ) from e
