"""Lightning modules, callbacks and schedules of the diffusion stage."""

from walt.lightning.callbacks import SampleLogger
from walt.lightning.conditioning import ConditionConfig
from walt.lightning.inflation import InflateFrom2D
from walt.lightning.lr import WarmupCosineLR
from walt.lightning.module import WALTModule

__all__ = ["ConditionConfig", "InflateFrom2D", "SampleLogger", "WALTModule", "WarmupCosineLR"]
