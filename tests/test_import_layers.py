"""The import layers of pyproject.toml hold, and an upward import breaks them (import-linter)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("common", "data", "models", "tokenizer", "walt")


def _lint(tree: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [str(Path(sys.executable).with_name("lint-imports")), "pyproject.toml",
           "--no-cache"]
    return subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@pytest.mark.parametrize(
    ("module", "upward"),
    [
        ("walt/core/latents.py", "import walt.lightning.module"),  # core -> lightning
        ("walt/pipelines/outputs.py", "from walt.evaluate import report"),  # pipelines -> evaluate
        ("models/blocks.py", "import tokenizer.network.vae"),  # models -> tokenizer
    ],
)
def test_upward_import_breaks_a_contract(tree: Path, module: str, upward: str) -> None:
    assert _lint(tree).returncode == 0, "the copied tree must pass before the change"
    path = tree / module
    path.write_text(path.read_text() + f"\n\ndef _upward():\n    {upward}  # noqa\n")
    result = _lint(tree)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
