"""Feature networks, loaded from local TorchScript files, and batched feature extraction.

Nothing is downloaded: the user passes the path of the file (see docs/evaluate.md for where the
standard ones come from). ``torch.jit.load`` runs the TorchScript graph stored in the file; it
does not unpickle Python objects, so the file cannot make this process run arbitrary Python.
The SHA-256 of every loaded file is returned so the CLI can print it next to the results.

Two call conventions are supported, each read off the TorchScript's ``forward`` arguments:

* I3D (FVD), StyleGAN-V's ``i3d_torchscript.pt``: ``net(x, rescale=True, resize=True,
  return_features=True)`` with ``x`` a ``(B, 3, T, H, W)`` video of values in [0, 255]; the
  network maps values to [-1, 1] and resizes frames to 224 x 224 itself and returns ``(B, 400)``
  logits taken before the softmax (Skorokhodov et al. 2022, ``fvd2048_16f``).
* Inception (FID / IS), either StyleGAN2-ADA's ``inception-2015-12-05.pt`` (the one clean-fid
  uses): ``net(x, return_features=True)`` -> ``(B, 2048)`` pool features and
  ``net(x, no_output_bias=True)`` -> ``(B, 1008)`` class probabilities, or any TorchScript whose
  ``net(x)`` returns the pair ``(features (B, D), logits (B, K))``. ``x`` is ``(B, 3, H, W)``
  uint8; the network resizes it to its own input size.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

CHUNK_BYTES = 1 << 20


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def load_torchscript(
    path: str | Path, *, device: str | torch.device, name: str
) -> tuple[torch.jit.ScriptModule, str]:
    """Load a TorchScript network in eval mode onto ``device``; returns it and its SHA-256.

    Args:
        path: the ``.pt`` TorchScript archive.
        device: where to map its tensors.
        name: the argument name, for error messages.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{name}: network file not found: {path}")
    sha256 = file_sha256(path)
    try:
        with warnings.catch_warnings():
            # torch marks TorchScript as deprecated; the standard I3D and Inception files are
            # TorchScript, and loading them is the point here.
            warnings.simplefilter("ignore", FutureWarning)
            net = torch.jit.load(str(path), map_location=device)
    except RuntimeError as err:
        raise ValueError(f"{name}: {path} is not a TorchScript archive ({err})") from err
    return net.eval(), sha256


def forward_arguments(net: torch.jit.ScriptModule) -> list[str]:
    """Names of the arguments of ``net.forward`` (without ``self``)."""
    return [arg.name for arg in net.forward.schema.arguments][1:]


class I3DFeatures:
    """FVD features with StyleGAN-V's I3D convention (see the module docstring).

    Args:
        net: the loaded I3D TorchScript.
        device: the device it lives on.
    """

    KEYWORDS = ("rescale", "resize", "return_features")

    def __init__(self, *, net: torch.jit.ScriptModule, device: str | torch.device) -> None:
        missing = [k for k in self.KEYWORDS if k not in forward_arguments(net)]
        if missing:
            raise ValueError(
                f"i3d: the network's forward has no argument(s) {missing}; expected StyleGAN-V's "
                "i3d_torchscript.pt convention forward(x, rescale, resize, return_features)"
            )
        self.net, self.device = net, torch.device(device)

    @torch.no_grad()
    def __call__(self, videos: torch.Tensor) -> torch.Tensor:
        """``(B, 3, T, H, W)`` uint8 videos -> ``(B, D)`` float64 features on the CPU."""
        _check_uint8(videos, ndim=5, name="videos")
        # Exactly StyleGAN-V's call: uint8 values in, rescaling and resizing done by the network.
        out = self.net(videos.to(self.device), rescale=True, resize=True, return_features=True)
        return _as_rows(out, len(videos), name="i3d features")


class InceptionFeatures:
    """FID pool features and IS logits from an Inception TorchScript (see the module docstring).

    Args:
        net: the loaded Inception TorchScript.
        device: the device it lives on.
    """

    def __init__(self, *, net: torch.jit.ScriptModule, device: str | torch.device) -> None:
        arguments = forward_arguments(net)
        self.stylegan = "return_features" in arguments
        if self.stylegan and "no_output_bias" not in arguments:
            raise ValueError(
                "inception: forward has return_features but no no_output_bias argument; expected "
                "StyleGAN2-ADA's inception-2015-12-05.pt convention"
            )
        self.net, self.device = net, torch.device(device)

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` uint8 -> ``(B, D)`` float64 pool features (for FID)."""
        _check_uint8(images, ndim=4, name="images")
        x = images.to(self.device)
        out = self.net(x, return_features=True) if self.stylegan else self._pair(x)[0]
        return _as_rows(out, len(images), name="inception features")

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` uint8 -> ``(B, K)`` float64 class logits (for IS)."""
        _check_uint8(images, ndim=4, name="images")
        x = images.to(self.device)
        if self.stylegan:
            # Salimans et al. 2016 as StyleGAN2-ADA runs it: softmax without the output bias.
            # log(p) are logits whose softmax is p again.
            probs = _as_rows(self.net(x, no_output_bias=True), len(images), name="probabilities")
            return probs.clamp_min(1e-30).log()
        return _as_rows(self._pair(x)[1], len(images), name="inception logits")

    def _pair(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(x)
        if not (isinstance(out, tuple | list) and len(out) == 2):
            raise ValueError(
                "inception: net(x) must return (features, logits) when forward has no "
                f"return_features argument; got {type(out).__name__}"
            )
        return out[0], out[1]


def extract_features(
    arrays: Iterable[tuple[str, np.ndarray]],
    network: Callable[[torch.Tensor], torch.Tensor],
    *,
    batch_size: int,
    pattern: str,
) -> tuple[list[str], torch.Tensor]:
    """Run ``network`` over keyed uint8 arrays in batches of equal shape.

    Args:
        arrays: ``(key, array)`` pairs; an array is one sample, channels last.
        network: maps a uint8 batch to ``(B, D)`` features.
        batch_size: samples per call; a change of shape also ends a batch.
        pattern: einops pattern from the stacked arrays to the network's layout, e.g.
            ``"b t h w c -> b c t h w"``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    keys: list[str] = []
    rows: list[torch.Tensor] = []
    for batch_keys, batch in _same_shape_batches(arrays, batch_size):
        rows.append(network(rearrange(torch.from_numpy(np.stack(batch)), pattern).contiguous()))
        keys.extend(batch_keys)
    if not rows:
        return keys, torch.empty(0, 0, dtype=torch.float64)
    return keys, torch.cat(rows)


def _same_shape_batches(
    arrays: Iterable[tuple[str, np.ndarray]], batch_size: int
) -> Iterator[tuple[list[str], list[np.ndarray]]]:
    keys: list[str] = []
    batch: list[np.ndarray] = []
    for key, array in arrays:
        if batch and (len(batch) == batch_size or array.shape != batch[0].shape):
            yield keys, batch
            keys, batch = [], []
        keys.append(key)
        batch.append(array)
    if batch:
        yield keys, batch


def _check_uint8(x: torch.Tensor, *, ndim: int, name: str) -> None:
    if x.dtype != torch.uint8 or x.ndim != ndim or x.shape[1] != 3:
        raise ValueError(
            f"{name} must be uint8 with {ndim} dims and 3 channels in dim 1, "
            f"got {x.dtype} {tuple(x.shape)}"
        )


def _as_rows(out: torch.Tensor, batch: int, *, name: str) -> torch.Tensor:
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != batch:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{name}: the network must return ({batch}, D) rows, got {shape}")
    return out.detach().double().cpu()
