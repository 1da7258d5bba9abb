"""Where a model argument leads when it is wrong: a mistyped local path is named at once,
and a hub id that cannot be loaded is a one-line error, not a traceback."""

import os
import subprocess
import sys

import pytest

from ias.errors import UserError
from ias.models import resolve_model


def test_a_missing_path_under_a_local_folder_is_an_unknown_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(UserError, match="^unknown model 'runs/mymodel'"):
        resolve_model("runs/mymodel")  # not sent to the hub: `runs/` is a folder here
    assert resolve_model("some-org/some-model") == "some-org/some-model"  # a hub id still passes


def test_a_hub_id_that_cannot_be_loaded_is_a_one_line_error(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}  # offline: fails at once, no retries
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ias.cli",
            "solve",
            "--backend",
            "openai",
            "--backend-opt",
            "base_url=http://127.0.0.1:1/v1",
            "--backend-opt",
            "tokenizer=no-such-org/no-such-model",
            "--limit",
            "1",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "ias: error: cannot load model 'no-such-org/no-such-model'" in result.stderr


@pytest.mark.parametrize("flags", [["--policy"], ["--prm-format", "qwen-prm", "--prm"]])
def test_a_hub_policy_or_prm_that_cannot_be_loaded_is_a_one_line_error(tmp_path, flags):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ias.cli",
            "solve",
            *flags,
            "no-such-org/no-such-model",
            "--limit",
            "1",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-1500:]
    assert "ias: error: cannot load model 'no-such-org/no-such-model'" in result.stderr
