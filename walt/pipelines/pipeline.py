"""``VideoPipeline``: every generation mode over one ``WALTModule``, from a ``GenerationSettings``.

Modes (``GenerationSettings.mode``), all built on W.A.L.T's frame condition
``c_fp = concat(m * z, m)``:

- ``sample``: class-conditional, unconditional or text-to-video clips;
- ``image``: one image encoded to 1 latent frame conditions the clip (image to video);
- ``predict``: the first 5 frames of a video, encoded to 2 latent frames (video prediction);
- ``interpolate``: the listed latent keyframes of a video are kept and the frames between are
  filled in (Make-A-Video's masked frame interpolation, in latent space);
- ``extend``: long videos by autoregressive extension (``walt.pipelines.extend``);
- ``upscale``: no base model: a given low-resolution video through the SR stages.

With ``sr_stages`` every mode runs the cascade (``walt.pipelines.cascade``): the base latents go
through the SR stages and only the top stage decodes; long videos upscale each chunk as it is
made, while the base's extension keeps conditioning on its own resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from common.atomic import atomic_path
from walt.core.generation import check_finite, sampling_stream
from walt.core.loading import load_walt_module
from walt.core.sampling import SamplingConfig
from walt.core.sr_comparison import comparison_sheet
from walt.diffusion.frame_masks import keyframe_indices
from walt.pipelines.cascade import SRStage, check_stages, load_stage, output_size, to_pixels
from walt.pipelines.extend import OVERLAP_FRAMES, extend, extended_length
from walt.pipelines.inputs import load_image, load_text_embeddings, load_video, video_frames
from walt.pipelines.outputs import ClipSink
from walt.pipelines.settings import GenerationSettings
from walt.pipelines.upscale import upscale_video
from walt.text_encoder import TextEncoder

# Pixel frames of video prediction: 2 latent frames (W.A.L.T sec. 4), as extension re-encodes.
PREDICT_FRAMES = OVERLAP_FRAMES


class VideoPipeline:
    """Generation over a loaded module.

    Args:
        module: the base ``WALTModule`` in eval mode (None for ``upscale`` only); the settings'
            ``sampling`` changes fields of its ``sampling``.
        checkpoint: where it was loaded from (recorded in the settings).
        sr_stages: super-resolution stages run after the base, in order (the cascade).
    """

    def __init__(
        self, *, module=None, checkpoint: str | None = None, sr_stages: Sequence[SRStage] = ()
    ) -> None:
        if module is None and not sr_stages:
            raise ValueError("give a base module, sr_stages or both")
        check_stages(sr_stages, base=module)
        self.module, self.checkpoint, self.sr_stages = module, checkpoint, list(sr_stages)

    @classmethod
    def from_settings(cls, settings: GenerationSettings, *, device: str = "cpu") -> VideoPipeline:
        """Load the checkpoints (through ``common.registry``; the file never chooses code)."""
        module = None
        if settings.mode != "upscale":
            module = load_walt_module(settings.checkpoint, map_location=device)
            module = module.eval()
        stages = [load_stage(p, device=device) for p in settings.sr_checkpoints or []]
        return cls(module=module, checkpoint=settings.checkpoint, sr_stages=stages)

    def resolve(self, settings: GenerationSettings) -> GenerationSettings:
        """The settings with every default made explicit (the module's and the SR stages'
        ``SamplingConfig`` with the settings' fields replaced, clip size and labels), so the
        saved JSON alone regenerates the run."""
        settings = self._resolve_stages(settings)
        if settings.mode == "upscale":
            return self._resolve_upscale(settings)
        m = self.module
        if m is None:
            raise ValueError(f"mode {settings.mode!r} needs a base model")
        sampling = m.checked_sampling(m.sampling.override(settings.sampling))
        return replace(
            settings, sampling=sampling.to_dict(),
            num_frames=settings.num_frames or m.num_frames,
            size=list(settings.size or m.size), fps=settings.fps or 8.0,
        )

    def _resolve_stages(self, settings: GenerationSettings) -> GenerationSettings:
        paths = settings.sr_checkpoints or [st.checkpoint for st in self.sr_stages]
        if len(paths) != len(self.sr_stages):
            raise ValueError(f"the settings name {len(paths)} SR stages, the pipeline holds "
                             f"{len(self.sr_stages)}")
        settings = replace(settings, sr_checkpoints=paths or None)
        changes = settings.stage_sampling()
        resolved = [st.module.checked_sampling(st.sampling.override(ch)).to_dict()
                    for st, ch in zip(self.sr_stages, changes, strict=True)]
        return replace(settings, sr_sampling=resolved or None)

    def _resolve_upscale(self, s: GenerationSettings) -> GenerationSettings:
        """Frames, size and rate of the video to upscale; the null label for class-conditional
        SR stages unless labels are given."""
        count, fps, size = video_frames(s.video)
        if s.num_frames is not None and not 1 <= s.num_frames <= count:
            raise ValueError(f"num_frames={s.num_frames} but {s.video} has {count} frames")
        labels = s.labels or ([-1] if self.sr_stages[0].module.inputs.labels else None)
        return replace(s, num_frames=s.num_frames or count, size=list(s.size or size),
                       fps=s.fps or fps, labels=labels, batch_size=1)

    def stages(self, s: GenerationSettings) -> list[SRStage]:
        """The SR stages sampling as the resolved settings say."""
        return [replace(st, sampling=SamplingConfig(**v))
                for st, v in zip(self.sr_stages, s.sr_sampling or [], strict=True)]

    def __call__(
        self, settings: GenerationSettings, out: str | Path, *, png_frames: bool = False,
        progress: bool = True,
    ) -> Path:
        """Generate the run into ``out``: clips, contact sheet, ``settings.json`` (and
        ``samples.pt``, the pixels, for modes other than ``extend``)."""
        s = self.resolve(settings)
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        if s.mode == "upscale":
            upscale_video(self.stages(s), s, out, streams=self._condition_streams(s),
                          png_frames=png_frames, progress=progress)
            s.save(out / "settings.json")
            return out
        size = (s.size[0], s.size[1])
        stages = self.stages(s)
        streams, captions, n = self._condition_streams(s)
        start, mask = self._frames(s, size)
        chunks = s.num_chunks if s.mode == "extend" else 1
        total = extended_length(s.num_frames, s.num_chunks) if s.mode == "extend" else s.num_frames
        generator = torch.Generator(device=self.module.device).manual_seed(s.seed)
        batches = range(0, n, s.batch_size)
        bar = tqdm(total=len(batches) * chunks * (1 + len(stages)), disable=not progress,
                   desc=f"{s.mode} (batches x chunks x {1 + len(stages)} stages)")
        tick = partial(bar.update, 1)
        sampling = SamplingConfig(**s.sampling)
        kept: list[Tensor] = []
        with ClipSink(out, num_clips=n, total_frames=total, size=output_size(size, stages),
                      fps=s.fps, png_frames=png_frames, captions=captions) as sink:
            for first in batches:
                b = min(s.batch_size, n - first)
                stream = {k: v[first:first + b] for k, v in streams.items()}
                stream["fps"] = torch.full((b,), s.fps)
                cond = None if start is None else start.expand(b, -1, -1, -1, -1)
                # base latents (B, c, t, h, w) -> top-resolution pixels (B, C, T, H', W')
                finish = None if not stages else partial(
                    to_pixels, self.module, stages, stream=stream, num_frames=s.num_frames,
                    size=size, generator=generator, on_stage=tick, progress=progress)
                if s.mode == "extend":
                    extend(self.module, stream=stream, num_samples=b, num_chunks=s.num_chunks,
                           num_frames=s.num_frames, size=size, start=cond, finish=finish,
                           emit=lambda px, first=first: sink.push(px, first=first),
                           generator=generator, on_chunk=tick, sampling=sampling,
                           progress=progress)
                    continue
                z = self.module.generate(
                    stream=stream, num_samples=b, num_frames=s.num_frames, size=size,
                    cond_pixels=cond, cond_mask=None if mask is None else mask.expand(b, -1),
                    sampling=sampling, generator=generator, decode=False, progress=progress,
                )  # (B, c, t, h, w)
                check_finite(z, what="latents")
                tick()
                pixels = (self.module.codec.decode(z) if finish is None else finish(z)).float()
                sink.push(pixels, first=first)
                kept.append(pixels.cpu())
                if stages and first == 0:  # low-res | bicubic | SR of the first clips
                    comparison_sheet(self.module.codec.decode(z), pixels,
                                     out / "cascade_sheet.png")
            sink.close()
        bar.close()
        if kept:
            with atomic_path(out / "samples.pt") as tmp:
                torch.save({"pixels": torch.cat(kept), "labels": s.labels}, tmp)
        s.save(out / "settings.json")
        return out

    def _condition_streams(
        self, s: GenerationSettings
    ) -> tuple[dict[str, Tensor], list[str] | None, int]:
        """Per-clip labels / text as stream tensors, contact-sheet captions, and the clip count
        (from what the base takes, or in ``upscale`` the first SR stage)."""
        inputs = self._conditioned().inputs
        if inputs.text:
            emb, mask = self._text(s)
            return {"text_emb": emb, "text_mask": mask}, s.prompts, emb.shape[0]
        if inputs.labels:
            if not s.labels:
                raise ValueError("a class-conditional model needs labels")
            bad = [v for v in s.labels if not -1 <= v < inputs.num_classes]
            if bad:
                raise ValueError(f"labels {bad} are outside [0, {inputs.num_classes}) (-1 = null)")
            labels = sampling_stream(labels=torch.tensor(s.labels))["label"]
            return {"label": labels}, [f"class {v}" for v in s.labels], len(s.labels)
        return {}, None, s.num_samples

    def _text(self, s: GenerationSettings) -> tuple[Tensor, Tensor]:
        if s.text_embeddings:
            return load_text_embeddings(s.text_embeddings)
        if s.prompts and s.text_encoder:
            return TextEncoder(s.text_encoder, max_length=self._conditioned().hparams.get(
                "text_max_length", 77))(s.prompts)
        raise ValueError("a text model needs text_embeddings, or prompts and a text_encoder")

    def _conditioned(self):
        """The module whose conditions (labels, text) the run's stream carries."""
        return self.module if self.module is not None else self.sr_stages[0].module

    def _frames(self, s: GenerationSettings, size: tuple[int, int]) -> tuple[Tensor | None, Any]:
        """Known pixel frames ``(1, C, T0, H, W)`` and, for interpolation, the ``(1, t)`` mask."""
        if s.mode == "image" or (s.mode == "extend" and s.image):
            return load_image(s.image, size=size), None
        if s.mode == "predict" or (s.mode == "extend" and s.video):
            return load_video(s.video, num_frames=PREDICT_FRAMES, size=size), None
        if s.mode == "interpolate":
            t, _, _ = self.module.codec.latent_shape(s.num_frames, size)
            keys = s.keyframes or keyframe_indices(t, s.keyframe_every)
            mask = torch.zeros(1, t)
            for k in keys:
                if not -t <= k < t:
                    raise ValueError(f"keyframe {k} is out of range for {t} latent frames")
                mask[0, k] = 1.0
            return load_video(s.video, num_frames=s.num_frames, size=size), mask
        return None, None
