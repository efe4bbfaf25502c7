"""Re-encoded training videos keep keyframes close, so a clip at a random start decodes little
before it (``data.encode.REENCODE_KEYFRAME_SECONDS``)."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from data.encode import REENCODE_KEYFRAME_SECONDS, Mp4Writer, encode_video, reencode_video


def _keyframes(data: bytes) -> list[int]:
    with av.open(io.BytesIO(data)) as container:
        packets = [p for p in container.demux(video=0) if p.size]
    return [i for i, packet in enumerate(packets) if packet.is_keyframe]


@pytest.mark.parametrize("fps", [4.0, 8.0])
def test_reencoded_keyframes_are_close(fps):
    rng = np.random.default_rng(0)
    # A slow pan over noise: no scene cut, so only the interval puts keyframes in.
    canvas = rng.integers(0, 255, (32, 160, 3), dtype=np.uint8)
    frames = np.stack([canvas[:, i : i + 32] for i in range(96)])
    source = encode_video(frames, fps=24.0)
    assert _keyframes(source) == [0]  # the encoder's default: one keyframe for these 4 s
    keys = _keyframes(reencode_video(source, size=16, fps=fps))
    interval = round(REENCODE_KEYFRAME_SECONDS * fps)
    assert keys[0] == 0 and len(keys) > 1
    assert max(np.diff(keys)) <= interval


def test_keyframe_interval_must_be_positive():
    with pytest.raises(ValueError, match="keyframe_interval"):
        Mp4Writer(io.BytesIO(), height=16, width=16, fps=8.0, keyframe_interval=0)
