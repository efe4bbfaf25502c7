"""``SamplingConfig``: every option of how a module samples, in one frozen value.

A ``WALTModule`` owns one (``model.init_args.sampling`` in YAML). A run changes it field by
field (``settings.json``'s ``sampling``, the ``walt.generate`` flags, ``generate(sampling=...)``)
through :meth:`SamplingConfig.override`, i.e. ``dataclasses.replace``, once; the resolved config
is saved whole with the run. Every value is checked here, when the config is built, and an
error names the option.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from walt.core.super_resolution import check_level
from walt.diffusion import GaussianDiffusion
from walt.samplers import (
    ClassifierFreeGuidance,
    GuidanceSchedule,
    Sampler,
    make_sampler,
    sampler_names,
    sampler_option_names,
)

# The scales of ClassifierFreeGuidance, which any finite value is valid for.
_SCALES = ("guidance_scale", "guidance_min_scale", "frame_guidance_scale")


@dataclass(frozen=True)
class SamplingConfig:
    """How clips are sampled (see ``docs/generation.md``).

    Args:
        sampler: a registered sampler (``"ddim"``, ``"ddpm"``, ``"dpmpp_2m"``; W.A.L.T: DDIM).
        sampler_options: the sampler's own options (``eta``, ``variance``,
            ``timestep_spacing``, ``clip_x0``, ...; see ``walt.samplers``).
        num_inference_steps: sampling steps (50 DDIM steps in the paper).
        guidance_scale: classifier-free guidance scale over label / text (1 = no guidance).
        guidance_schedule: how the scale ramps over sampling (``"constant"``, ``"linear"``,
            ``"cosine"``), from ``guidance_min_scale`` up to ``guidance_scale``.
        guidance_min_scale: start of a non-constant guidance schedule.
        guidance_reverse: run a non-constant schedule from ``guidance_scale`` down instead.
        guidance_rescale: guidance rescale ``phi`` in [0, 1] (Lin et al. 2023, Sec. 3.4).
        frame_guidance_scale: guidance over the frame condition ``c_fp`` (W.A.L.T App. A;
            1 = off).
        noise_level: super-resolution stages only: the level their low-res input is noised to,
            a fraction of ``num_train_timesteps`` in [0, 1] (0.15: timestep 150, SNR 3.6,
            inside Imagen Video's 3 to 5); also the fixed level of their validation losses.
    """

    sampler: str = "ddim"
    sampler_options: Mapping[str, Any] = field(default_factory=dict)
    num_inference_steps: int = 50
    guidance_scale: float = 1.0
    guidance_schedule: GuidanceSchedule = "constant"
    guidance_min_scale: float = 1.0
    guidance_reverse: bool = False
    guidance_rescale: float = 0.0
    frame_guidance_scale: float = 1.0
    noise_level: float = 0.15

    def __post_init__(self) -> None:
        object.__setattr__(self, "sampler_options", dict(self.sampler_options or {}))
        for name in (*_SCALES, "guidance_rescale", "noise_level"):
            _check_finite(getattr(self, name), name)
        steps = self.num_inference_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"num_inference_steps must be an integer >= 1, got {steps!r}")
        if not isinstance(self.guidance_reverse, bool):
            raise ValueError(f"guidance_reverse must be true or false, got {self.guidance_reverse!r}")
        check_level(self.noise_level, name="noise_level")
        self._check_sampler()
        self.guidance()  # checks the schedule and the rescale, naming them

    def _check_sampler(self) -> None:
        if self.sampler not in sampler_names():
            raise ValueError(f"unknown sampler {self.sampler!r}; expected one of {sampler_names()}")
        known = sampler_option_names(self.sampler)
        unknown = sorted(set(self.sampler_options) - set(known))
        if unknown:
            raise ValueError(f"sampler_options {unknown} are not options of the {self.sampler!r} "
                             f"sampler; it takes {list(known)}")
        for key, value in self.sampler_options.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                _check_finite(value, f"sampler_options[{key!r}]")

    def override(self, changes: Mapping[str, Any] | None) -> SamplingConfig:
        """This config with ``changes`` (field name -> value) replaced, checked again."""
        changes = dict(changes or {})
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise ValueError(f"unknown sampling options {unknown}; SamplingConfig has "
                             f"{[f.name for f in fields(self)]}")
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as saved in checkpoints and ``settings.json``."""
        data = asdict(self)
        data["sampler_options"] = dict(self.sampler_options)
        return data

    def guidance(self) -> ClassifierFreeGuidance:
        """The classifier-free guidance these options describe."""
        return ClassifierFreeGuidance(
            guidance_scale=self.guidance_scale,
            guidance_schedule=self.guidance_schedule,
            guidance_min_scale=self.guidance_min_scale,
            guidance_reverse=self.guidance_reverse,
            guidance_rescale=self.guidance_rescale,
            frame_guidance_scale=self.frame_guidance_scale,
        )

    def make_sampler(self, diffusion: GaussianDiffusion) -> Sampler:
        """The sampler on ``diffusion``'s schedule; a bad option value raises ``ValueError``
        naming the sampler's options."""
        try:
            return make_sampler(self.sampler, diffusion,
                                num_inference_steps=self.num_inference_steps,
                                **self.sampler_options)
        except TypeError as err:  # e.g. {"eta": "high"}: compared with a number
            raise ValueError(f"sampler_options {dict(self.sampler_options)} do not suit the "
                             f"{self.sampler!r} sampler: {err}") from None


def _check_finite(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
