"""What `ias calibrate` and `ias calib-eval` refuse or restrict, on real rollouts of the weak
policy: bad quantile levels, conformal steps the held-out rows cannot support, in-sample
metrics, calibrators applied to another PRM, and splits that leave nothing to fit on."""

import json
import shutil

import numpy as np
import pytest

import ias
from ias.calibration.calibrate import METHODS, calibrated_prm, conformal_shift
from ias.calibration.quantile_lora import QuantileReader
from ias.calibration.store import load_targets
from ias.errors import UserError
from ias.models import ZOO_DIR
from ias.prm.base import load_prm


@pytest.fixture(scope="module")
def rollouts(tmp_path_factory):
    """A 12-problem and a 1-problem rollout folder (seconds)."""
    root = tmp_path_factory.mktemp("checks")
    ias.rollout(
        task="arith",
        split="calib",
        policy="arith-weak",
        n_traj=3,
        n_mc=4,
        out=root / "r12",
        limit=12,
        batch_problems=12,
        progress=False,
    )
    ias.rollout(
        task="arith", split="calib", policy="arith-weak", n_traj=2, n_mc=2, out=root / "r1", limit=1, progress=False
    )
    return root


def _rows_of(folder, problems) -> int:
    return sum(r.problem_id in set(problems) for r in load_targets(folder))


@pytest.mark.parametrize(
    "method,levels", [("isotonic", (0.5, 1.5)), ("quantile-head", (0.5, 0.5)), ("quantile-lora", (0.9, 0.5, 0.1))]
)
def test_levels_are_checked_for_every_method(rollouts, tmp_path, method, levels):
    with pytest.raises(UserError, match=r"distinct, increasing and inside \(0, 1\)"):
        ias.calibrate(rollouts / "r12", prm="arith-prm", method=method, levels=levels, out=tmp_path / "c")
    with pytest.raises(UserError, match="increasing"):  # the reader itself would mislabel its sorted columns
        QuantileReader(4, levels)


@pytest.mark.slow
def test_a_split_that_leaves_nothing_to_fit_on_is_one_user_error(rollouts, tmp_path, cli):
    for method in METHODS:
        with pytest.raises(UserError, match=r"^--held-out 0.2 of 1 problem\(s\) holds out every one"):
            ias.calibrate(rollouts / "r1", prm="arith-prm", method=method, out=tmp_path / method)
    done = cli("calibrate", "--rollouts", str(rollouts / "r1"), "--method", "isotonic", "--out", str(tmp_path / "c"))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    bad = cli(
        "calibrate",
        "--rollouts",
        str(rollouts / "r12"),
        "--method",
        "quantile-lora",
        "--levels",
        "0.9,0.5,0.1",
        "--out",
        str(tmp_path / "c"),
    )
    assert bad.returncode == 2 and "ias: error: quantile levels (--levels)" in bad.stderr, bad.stderr


def test_conformal_refuses_an_alpha_its_rows_cannot_support():
    assert conformal_shift(np.zeros(9), np.zeros(9), 0.1) == 0.0  # k = ceil(10 * 0.9) = 9 <= 9
    with pytest.raises(UserError, match=r"^--conformal 0.1 needs at least 9 held-out rows to fit its shift, got 8"):
        conformal_shift(np.zeros(8), np.zeros(8), 0.1)
    with pytest.raises(UserError, match="needs at least 99 held-out rows"):
        conformal_shift(np.ones(50), np.zeros(50), 0.01)


def test_conformal_shift_and_metrics_come_from_different_held_out_problems(rollouts, tmp_path):
    info = ias.calibrate(
        rollouts / "r12", prm="arith-prm", method="quantile-head", conformal=0.2, held_out=0.5, out=tmp_path / "c"
    )
    data = info["data"]
    assert data["conformal_rows"] > 0 and data["metrics_rows"] > 0
    assert data["conformal_rows"] + data["metrics_rows"] == data["held_out_rows"]
    assert info["conformal"]["rows"] == data["conformal_rows"]
    held_rows = _rows_of(rollouts / "r12", data["held_out_problems"])
    assert info["metrics_held_out"]["rows"] == data["metrics_rows"] == held_rows
    with pytest.raises(UserError, match="needs at least 2 held-out problems"):
        ias.calibrate(
            rollouts / "r12", prm="arith-prm", method="quantile-head", conformal=0.2, held_out=0.05, out=tmp_path / "c1"
        )


def test_calib_eval_on_the_fit_rollouts_scores_only_held_out_problems(rollouts, tmp_path, cli):
    cal = tmp_path / "cal"
    info = ias.calibrate(rollouts / "r12", prm="arith-prm", method="quantile-head", out=cal)
    held = info["data"]["held_out_problems"]
    assert 0 < len(held) < 12
    done = cli(
        "calib-eval", "--rollouts", str(rollouts / "r12"), "--calibrator", str(cal), "--out", str(tmp_path / "e")
    )
    assert done.returncode == 0, done.stderr
    assert f"only the calibrator's {len(held)} held-out problems" in done.stdout
    report = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert report["held_out_only"] and report["problems"] == len(held)
    assert report["rows"] == report["methods"]["uncalibrated"]["rows"] == _rows_of(rollouts / "r12", held)

    other = ias.calib_eval(rollouts / "r1", prm="arith-prm", calibrator=cal, out=tmp_path / "e1")
    assert not other["held_out_only"] and other["rows"] == len(load_targets(rollouts / "r1"))

    info = json.loads((cal / "calibration.json").read_text())
    del info["data"]["held_out_problems"]  # a calibrator from before they were recorded
    (cal / "calibration.json").write_text(json.dumps(info))
    with pytest.raises(UserError, match="records no held-out problems"):
        ias.calib_eval(rollouts / "r12", prm="arith-prm", calibrator=cal, out=tmp_path / "e2")
    with pytest.raises(UserError, match="must be another rollout folder"):
        ias.calib_eval(rollouts / "r12", prm="arith-prm", compare=rollouts / "r12", out=tmp_path / "e3")


def test_a_calibrator_refuses_a_prm_it_was_not_fitted_for(rollouts, tmp_path, monkeypatch, zoo_prm):
    mine = tmp_path / "my-prm"
    shutil.copytree(ZOO_DIR / "arith-prm", mine)
    cal = tmp_path / "cal"
    ias.calibrate(rollouts / "r12", prm=str(mine), method="quantile-head", out=cal)
    with pytest.raises(UserError, match=rf"^calibrator {cal} was fitted for PRM {mine}, not arith-prm;"):
        calibrated_prm(zoo_prm, cal)
    with pytest.raises(UserError, match="was fitted for PRM"):
        ias.calib_eval(rollouts / "r1", prm="arith-prm", calibrator=cal, out=tmp_path / "e")
    monkeypatch.chdir(tmp_path)  # the same folder spelled another way is the same PRM
    [reading] = calibrated_prm(load_prm("my-prm"), cal).score([("Compute 5+3.", ["5+3=8", "\\boxed{8}"])])
    assert len(reading.quantiles) == 2
