"""Image-to-video inflation (Make-A-Video, Singer et al. 2022, Sec. 3.2): load the weights of a 2D
image U-Net (the same class built with ``enable_time=False``) into its space-time version.

Every temporal layer of the video model starts at the identity (Dirac temporal convs, zero
temporal attention outputs), so right after loading the video model's output equals the image
model's output frame by frame. The state dict must match exactly except for the temporal
parameters, which must all be missing; anything else is refused with the offending keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from safetensors.torch import load_file
from torch import Tensor, nn

from common.checkpoint_files import read_weights_file


def is_temporal_key(key: str) -> bool:
    """True for parameters and buffers of temporal layers (any path part named ``temporal*``)."""
    return any(part.startswith("temporal") for part in key.split("."))


def inflate_from_2d(model: nn.Module, state_dict: Mapping[str, Tensor]) -> list[str]:
    """Load a 2D U-Net's ``state_dict`` into the space-time ``model``.

    Args:
        model: a ``SpaceTimeUnet`` / ``Unet3D`` built with ``enable_time=True``.
        state_dict: the same class's state dict built with ``enable_time=False``.

    Returns:
        The sorted temporal keys of ``model`` that the 2D weights did not provide (they keep
        their identity initialisation).

    Raises:
        ValueError: ``state_dict`` has temporal keys, keys ``model`` lacks, shapes that differ,
            or lacks non-temporal keys of ``model``.
    """
    own = model.state_dict()
    problems = []
    temporal = sorted(k for k in state_dict if is_temporal_key(k))
    if temporal:
        problems.append(f"temporal keys in the 2D weights: {temporal[:5]}")
    unexpected = sorted(k for k in state_dict if k not in own)
    if unexpected:
        problems.append(f"keys the model lacks: {unexpected[:5]}")
    shapes = [
        f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in state_dict.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    if shapes:
        problems.append(f"shape mismatches: {shapes[:5]}")
    missing = sorted(k for k in own if k not in state_dict)
    spatial_missing = [k for k in missing if not is_temporal_key(k)]
    if spatial_missing:
        problems.append(f"non-temporal keys missing from the 2D weights: {spatial_missing[:5]}")
    if problems:
        raise ValueError("cannot inflate these 2D weights: " + "; ".join(problems))
    model.load_state_dict(dict(state_dict), strict=False)
    return missing


def load_2d_state_dict(path: str | Path, *, prefix: str = "ema.module.") -> dict[str, Tensor]:
    """A 2D U-Net's weights from a safetensors file or a ``WALTModule`` Lightning checkpoint.

    Args:
        path: ``.safetensors`` (``python -m walt.export``: the backbone's own keys) or a
            Lightning ``.ckpt`` of a ``WALTModule``.
        prefix: key prefix of the wanted weights in a checkpoint's ``state_dict``, stripped
            (``"ema.module."``: the EMA weights used for sampling; ``"backbone."``: the raw ones).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"2D U-Net weights {str(path)!r} do not exist")
    if path.suffix == ".safetensors":
        return load_file(str(path))
    ckpt = read_weights_file(path)
    sd = ckpt.get("state_dict", ckpt)
    picked = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    if not picked:
        raise ValueError(f"no keys start with prefix={prefix!r} in {path}")
    return picked
