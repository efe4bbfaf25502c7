"""The class names a dataset's shards declare (``data.synthetic`` writes them into each json)."""

from __future__ import annotations

import json
import tarfile

import braceexpand


def class_names_from_shards(pattern: str) -> list[str]:
    """The ``class_names`` list stored in the first json member of the first shard."""
    first = next(iter(braceexpand.braceexpand(pattern)))
    with tarfile.open(first) as tar:
        for member in tar:
            if member.name.endswith(".json"):
                meta = json.loads(tar.extractfile(member).read())
                if "class_names" in meta:
                    return list(meta["class_names"])
    raise ValueError(f"no json member with 'class_names' in {first}")
