"""The tree passes `ruff check` (config in pyproject.toml), so style drift fails the suite, not review."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECKED = ("src", "tests", "benchmarks")


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None,
                    reason="ruff is not installed (pip install -e '.[test]' installs it)")
def test_ruff_check_passes_on_the_tree():
    done = subprocess.run([sys.executable, "-m", "ruff", "check", *CHECKED], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"ruff check {' '.join(CHECKED)} failed:\n{done.stdout}{done.stderr}"
