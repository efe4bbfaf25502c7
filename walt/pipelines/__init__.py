"""Generation pipelines over a trained ``WALTModule``: one Python API for every conditioning mode
(class, unconditional, text, image to video, video prediction, keyframe interpolation and long
videos by autoregressive extension), through the super-resolution cascade or upscaling a given
video; ``python -m walt.generate`` is a thin command line over it.
See ``docs/generation.md``."""

from walt.pipelines.cascade import SRStage, load_stage
from walt.pipelines.pipeline import VideoPipeline
from walt.pipelines.settings import MODES, GenerationSettings

__all__ = ["MODES", "GenerationSettings", "SRStage", "VideoPipeline", "load_stage"]
