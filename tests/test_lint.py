"""The tree passes ruff (lint and format) and mypy (configs in pyproject.toml), so style and type
drift fail the suite, not review."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECKED = ("src", "tests", "benchmarks")


def _run(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


needs_ruff = pytest.mark.skipif(
    importlib.util.find_spec("ruff") is None, reason="ruff is not installed (pip install -e '.[test]' installs it)"
)


@needs_ruff
def test_ruff_check_passes_on_the_tree():
    done = _run("ruff", "check", *CHECKED)
    assert done.returncode == 0, f"ruff check {' '.join(CHECKED)} failed:\n{done.stdout}{done.stderr}"


@needs_ruff
def test_the_tree_is_ruff_formatted():
    done = _run("ruff", "format", "--check", *CHECKED)
    assert done.returncode == 0, f"run `ruff format {' '.join(CHECKED)}`:\n{done.stdout}{done.stderr}"


@pytest.mark.skipif(
    importlib.util.find_spec("mypy") is None, reason="mypy is not installed (pip install -e '.[test]' installs it)"
)
def test_mypy_passes_on_src():
    done = _run("mypy", timeout=600)  # files and settings: [tool.mypy] in pyproject.toml
    assert done.returncode == 0, f"mypy failed:\n{done.stdout}{done.stderr}"
