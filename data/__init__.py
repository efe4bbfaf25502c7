"""Data pipeline: webdataset shards of videos and images to batches of named streams.

Public names are imported lazily so ``import data`` stays light (no torch/av/lightning until
one of them is used).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "WebVideoDataModule": "data.datamodule",
    "EpochLoader": "data.datamodule",
    "NamedStreams": "data.datamodule",
    "check_num_frames": "data.datamodule",
    "WebVideoStream": "data.pipeline",
    "StreamOptions": "data.pipeline",
    "BadSampleWarning": "data.pipeline",
    "TooManyFailuresError": "data.pipeline",
    "LatentShapeWarning": "data.pipeline",
    "FailureGuard": "data.pipeline",
    "assign_shards": "data.pipeline",
    "ShardSink": "data.shards",
    "MediaTooLargeError": "data.decode",
    "DEFAULT_MAX_PIXELS": "data.decode",
    "expand_urls": "data.pipeline",
    "split_shards": "data.pipeline",
    "SampleSpec": "data.samples",
    "SkippedSamplesLogger": "data.callbacks",
    "decode_clip": "data.decode",
    "decode_image": "data.decode",
    "probe_video": "data.decode",
    "Clip": "data.decode",
    "ShortClipError": "data.decode",
    "VIDEO_EXTENSIONS": "data.decode",
    "IMAGE_EXTENSIONS": "data.decode",
    "frames_to_pixels": "data.transforms",
    "score_samples": "data.shape_detector",
    "detect_shape": "data.shape_detector",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'data' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
