"""Lightning modules and callbacks of the diffusion stage (``WarmupCosineLR`` is
``common.lr``'s, re-exported because configs name ``walt.lightning.WarmupCosineLR``)."""

from common.lr import WarmupCosineLR
from walt.core.backbone_inputs import ConditionConfig
from walt.core.sampling import SamplingConfig
from walt.core.super_resolution import SuperResolutionConfig
from walt.lightning.callbacks import SampleLogger
from walt.lightning.inflation import InflateFrom2D
from walt.lightning.module import WALTModule
from walt.lightning.quality import GenerationQuality

__all__ = [
    "ConditionConfig",
    "GenerationQuality",
    "InflateFrom2D",
    "SampleLogger",
    "SamplingConfig",
    "SuperResolutionConfig",
    "WALTModule",
    "WarmupCosineLR",
]
