"""Lightning modules, callbacks and schedules of the diffusion stage."""

from walt.lightning.callbacks import SampleLogger
from walt.lightning.conditioning import ConditionConfig
from walt.lightning.lr import WarmupCosineLR
from walt.lightning.module import WALTModule
from walt.lightning.quality import GenerationQuality

__all__ = ["ConditionConfig", "GenerationQuality", "SampleLogger", "WALTModule", "WarmupCosineLR"]
