"""Fixtures shared by the test files: what is slow to build is built once per session.

The zoo's models (policy `arith-weak`, PRM `arith-prm`) are loaded once and shared: a test
may wrap or `copy.copy` them but must not change their attributes. The tiny PRM folders,
the small rollout folder and the calibrator fitted on it are made once in a session
folder: a test that would change one copies it first (calibrating writes elsewhere).
`ias` is imported inside the fixtures, so a module that fails to import fails only the
tests that use it, not the collection of every file.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

if TYPE_CHECKING:
    from ias.policy.base import Policy
    from ias.prm.base import PRM
    from ias.tasks.base import Task


@pytest.fixture(scope="session")
def zoo_policy() -> Policy:
    """The zoo policy `arith-weak` (hf backend, default options)."""
    from ias.policy.base import load_policy

    return load_policy("arith-weak")


@pytest.fixture(scope="session")
def zoo_prm() -> PRM:
    """The zoo PRM `arith-prm` (hf backend, default options), uncalibrated."""
    from ias.prm.base import load_prm

    return load_prm("arith-prm")


@pytest.fixture(scope="session")
def arith() -> Task:
    """The built-in `arith` task with its default options."""
    from ias.tasks.base import get_task

    return get_task("arith")


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory) -> Path:
    """A tiny Qwen2.5-Math-PRM-like folder (no ias_prm.json, as the real one has none)."""
    from tiny_models import tiny_qwen2_prm

    return tiny_qwen2_prm(tmp_path_factory.mktemp("tiny-qwen-prm"))


@pytest.fixture(scope="session")
def tiny_shepherd_dir(tmp_path_factory) -> Path:
    """A tiny Math-Shepherd-like folder carrying its format file."""
    from tiny_models import tiny_mistral_shepherd

    return tiny_mistral_shepherd(tmp_path_factory.mktemp("tiny-shepherd"))


@pytest.fixture(scope="session")
def small_rollouts(tmp_path_factory) -> Path:
    """Rollouts of the zoo policy on 8 calib problems (2 trajectories x 2 continuations, at
    most 3 prefixes each): enough rows to fit and hold out, built in seconds."""
    import ias

    folder = tmp_path_factory.mktemp("small-rollouts") / "rollouts"
    ias.rollout(
        task="arith",
        split="calib",
        policy="arith-weak",
        n_traj=2,
        n_mc=2,
        max_prefix=3,
        out=folder,
        limit=8,
        progress=False,
    )
    return folder


@pytest.fixture(scope="session")
def small_calibrator(small_rollouts, tmp_path_factory) -> Path:
    """A quantile-head calibrator of the zoo PRM fitted on `small_rollouts` (the default method)."""
    import ias

    folder = tmp_path_factory.mktemp("small-calibrator") / "cal"
    ias.calibrate(small_rollouts, prm="arith-prm", method="quantile-head", out=folder)
    return folder


def _run_ias(*args: str, **kw) -> subprocess.CompletedProcess:
    """`python -m ias.cli ARGS` as a user runs it: a real subprocess, its output captured as text."""
    return subprocess.run([sys.executable, "-m", "ias.cli", *args], capture_output=True, text=True, **kw)


@pytest.fixture(scope="session")
def cli() -> Callable[..., subprocess.CompletedProcess]:
    """Run the `ias` command: `cli("solve", "--limit", "1", env=...)` (keywords go to subprocess.run)."""
    return _run_ias


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread for the test: on a shared 2-core CPU, two were several times slower (see README)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
