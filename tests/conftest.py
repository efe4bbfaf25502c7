"""Suite-wide checks: tests write only under their ``tmp_path``, never into the repository."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Written by Python and the tools themselves, not by the code under test.
_TOOL_DIRS = ("__pycache__", ".pytest_cache", ".ruff_cache")


def _tree_status() -> set[str] | None:
    """``git status`` of the working tree, ignored files included; None outside a git checkout."""
    if shutil.which("git") is None:
        return None
    result = subprocess.run(
        ["git", "status", "--porcelain", "--ignored", "--untracked-files=all"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        return None
    lines = set(result.stdout.splitlines())  # "XY path": a two-letter status, a space, the path
    return {line for line in lines if not any(d in line[3:].split("/") for d in _TOOL_DIRS)}


@pytest.fixture(scope="session", autouse=True)
def repository_stays_clean():
    """Fail the session if the tests added or changed files in the working tree."""
    before = _tree_status()
    yield
    if before is None:
        return
    after = _tree_status()
    new = sorted(after - before) if after is not None else []
    assert not new, "tests wrote into the repository (write under tmp_path):\n" + "\n".join(new)
