"""``make_shards --reencode --keep-aspect``: the short side is ``--size``, the frame is whole."""

import io
import tarfile

import av
import numpy as np

from data.encode import write_mp4
from data.make_shards import main


def test_keep_aspect_reencode(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_mp4(np.full((6, 48, 96, 3), 120, np.uint8), src / "wide.mp4", fps=8)
    assert (
        main(
            [str(src), str(tmp_path / "s-%06d.tar"), "--reencode", "--keep-aspect", "--size", "16"]
        )
        == 0
    )

    with tarfile.open(tmp_path / "s-000000.tar") as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(".mp4"))
        data = tar.extractfile(member).read()
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.height, stream.codec_context.width) == (16, 32)
