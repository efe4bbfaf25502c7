"""Lightning modules, callbacks and schedules of the diffusion stage."""

from walt.lightning.backbone_inputs import ConditionConfig
from walt.lightning.callbacks import SampleLogger
from walt.lightning.lr import WarmupCosineLR
from walt.lightning.module import WALTModule

__all__ = ["ConditionConfig", "SampleLogger", "WALTModule", "WarmupCosineLR"]
