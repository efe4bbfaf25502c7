"""The cascade of W.A.L.T's latent super-resolution (Gupta et al. 2023, Sec. 4.5): a base model's
latents go through 2x super-resolution stages (e.g. 128x224 -> 256x448 -> 512x896) and only the
top stage decodes to pixels.

Every stage works in the same tokenizer's normalised latent space, so the base latents are passed
to the first SR stage directly, with no decode and re-encode; each stage doubles the latent's
height and width, conditioned on the one below (noised to the stage's ``noise_level``, in its
``SamplingConfig``: the noise-conditioning augmentation of Cascaded Diffusion Models, Ho et al. 2022). The frame count
and the frame arithmetic of every mode are those of the base: SR changes only ``H`` and ``W``.

The top-resolution decode streams in time and tiles in space (``CausalVAE``'s ``stream_*`` and
``tile_*`` options), so a 17x512x896 clip never needs the whole clip's activations in memory
(``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from walt.core.generation import check_finite
from walt.core.loading import load_walt_module
from walt.core.sampling import SamplingConfig

# Tokenizer settings that only change how a decode is scheduled, not the latent space.
_SCHEDULING = ("stream_above", "stream_chunk", "stream_frames", "tile_above", "tile_size",
               "tile_overlap")


@dataclass
class SRStage:
    """One super-resolution stage of a cascade.

    Args:
        module: a ``WALTModule`` with ``is_super_resolution`` (eval mode).
        checkpoint: where it was loaded from (recorded in the settings).
        sampling: how it samples, its ``noise_level`` included (default: the module's).
    """

    module: Any
    checkpoint: str
    sampling: SamplingConfig | None = None

    def __post_init__(self) -> None:
        if self.sampling is None:
            self.sampling = self.module.sampling


def load_stage(path: str | Path, *, device: str = "cpu") -> SRStage:
    """An SR stage from a Lightning checkpoint or a ``walt.export`` model folder or file (through
    ``common.registry``: the file never chooses code), sampling as the module does."""
    module = load_walt_module(path, map_location=device).eval()
    if not getattr(module, "is_super_resolution", False):
        raise ValueError(f"--sr {path}: this checkpoint is not a super-resolution stage "
                         "(give the base model as the first, positional, checkpoint)")
    return SRStage(module=module, checkpoint=str(path))


def check_stages(stages: Sequence[SRStage], *, base: nn.Module | None = None) -> None:
    """Raise a clear error unless every stage is SR and all share the base's tokenizer (the
    latents pass from stage to stage without decoding)."""
    for i, stage in enumerate(stages):
        if not getattr(stage.module, "is_super_resolution", False):
            raise ValueError(f"SR stage {i + 1} ({stage.checkpoint}) is not a super-resolution "
                             "module")
    modules = ([base] if base is not None else []) + [s.module for s in stages]
    spaces = [_latent_space(m.codec) for m in modules]
    for m, space in zip(modules[1:], spaces[1:], strict=True):
        if space != spaces[0]:
            raise ValueError(
                "every cascade stage must use the same tokenizer (latents pass between stages "
                f"without decoding), but the tokenizer {m.hparams.get('tokenizer')!r} differs "
                f"from {modules[0].hparams.get('tokenizer')!r}")


def _latent_space(codec: nn.Module) -> dict[str, Any]:
    """What fixes a codec's latent space: its tokenizer's config without the decode schedule."""
    vae = getattr(codec, "vae", None)
    if vae is None:
        return {"pixels": codec.latent_channels}
    return {k: v for k, v in vae.config.items() if k not in _SCHEDULING}


def output_size(size: Sequence[int], stages: Sequence[SRStage]) -> tuple[int, int]:
    """Pixel ``(H, W)`` at the top of the cascade: 2x per side per stage."""
    scale = 2 ** len(stages)
    return size[0] * scale, size[1] * scale


def upscale(
    stages: Sequence[SRStage],
    z: Tensor,
    *,
    stream: Mapping[str, Any],
    num_frames: int,
    size: Sequence[int],
    generator: Any = None,
    progress: bool = False,
    on_stage: Callable[[], None] | None = None,
) -> Tensor:
    """Run the SR stages on normalised latents ``z`` (B, c, t, h, w) of ``num_frames`` x ``size``
    pixels; returns the top stage's normalised latents (B, c, t, 2^n h, 2^n w).

    ``stream`` carries the run's label / text / fps; each stage uses the conditions it takes.
    """
    for stage in stages:
        size = (2 * size[0], 2 * size[1])
        z = stage.module.generate(
            stream=stream, sampling=stage.sampling, num_samples=z.shape[0],
            num_frames=num_frames, size=size, lowres_latents=z, generator=generator,
            decode=False, progress=progress,
        )  # (B, c, t, 2h, 2w)
        check_finite(z, what=f"latents at SR stage {stage.checkpoint}")
        if on_stage is not None:
            on_stage()
    return z


def top_codec(base: nn.Module | None, stages: Sequence[SRStage]) -> nn.Module:
    """The codec that decodes the cascade's output: the top stage's (or the base's)."""
    return stages[-1].module.codec if stages else base.codec


def to_pixels(
    base: nn.Module | None,
    stages: Sequence[SRStage],
    z: Tensor,
    **kwargs: Any,
) -> Tensor:
    """Base-resolution normalised latents ``z`` (B, c, t, h, w) -> top-resolution pixels
    (B, C, T, 2^n H, 2^n W): the SR stages (``upscale``'s keyword arguments), then one decode,
    streamed in time and tiled in space by the tokenizer."""
    if stages:
        z = upscale(stages, z, **kwargs)
    return top_codec(base, stages).decode(z)  # (B, C, T, H', W')
