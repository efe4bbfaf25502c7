"""Plain torch files (weights, saved samples) are read through the one loading gate,
``common.checkpoint_files``: weights-only, so a file that names code is refused unrun."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from common.checkpoint_files import read_weights_file
from tokenizer.training.perceptual import load_state_dict
from walt.evaluate_synthetic import evaluate

ROOT = Path(__file__).resolve().parents[1]
GATE = ROOT / "common" / "checkpoint_files.py"


class _Payload:
    """Pickles as a call to ``Path.touch``: loading it freely would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_only_the_gate_calls_torch_load():
    files = [p for top in ("common", "data", "models", "tokenizer", "walt")
             for p in (ROOT / top).rglob("*.py")] + [ROOT / "train.py"]
    call = re.compile(r"torch\.load\(")
    outside = [f"{p.relative_to(ROOT)}:{n}" for p in files if p != GATE
               for n, line in enumerate(p.read_text().splitlines(), 1)
               if call.search(line) and "``" not in line]  # docstrings quote it in ``...``
    assert outside == []


@pytest.mark.parametrize(
    "read",
    [read_weights_file, load_state_dict,
     lambda path: evaluate(path.parent, shards="unused")],
    ids=["gate", "perceptual-weights", "samples.pt"],
)
def test_a_file_naming_code_is_refused_unrun(tmp_path, read):
    marker = tmp_path / "ran"
    path = tmp_path / "samples.pt"
    torch.save({"labels": _Payload(marker), "pixels": torch.zeros(1)}, path)
    with pytest.raises(Exception, match="(?i)weights.only|unpickl"):
        read(path)
    assert not marker.exists()


def test_reads_tensors_onto_the_cpu(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"weight": torch.arange(3.0), "labels": [1, 2]}, path)
    loaded = read_weights_file(path)
    assert loaded["labels"] == [1, 2] and torch.equal(loaded["weight"], torch.arange(3.0))
    assert loaded["weight"].device.type == "cpu"
