"""Lightning modules and callbacks of the diffusion stage (``WarmupCosineLR`` is
``common.lr``'s, re-exported because configs name ``walt.lightning.WarmupCosineLR``)."""

from common.lr import WarmupCosineLR
from walt.lightning.backbone_inputs import ConditionConfig
from walt.lightning.callbacks import SampleLogger
from walt.lightning.inflation import InflateFrom2D
from walt.lightning.module import WALTModule
from walt.lightning.quality import GenerationQuality
from walt.lightning.super_resolution import SuperResolutionConfig

__all__ = [
    "ConditionConfig",
    "GenerationQuality",
    "InflateFrom2D",
    "SampleLogger",
    "SuperResolutionConfig",
    "WALTModule",
    "WarmupCosineLR",
]
