"""ias calibrate / calib-eval / solve --calibrator on real rollouts of the weak policy."""

import json

import numpy as np
import pytest

import ias
from ias.calibration.calibrate import METHODS, calibrated_prm, conformal_shift, load_calibrator
from ias.errors import UserError


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("cal")
    for split in ("calib", "test"):
        ias.rollout(
            task="arith",
            split=split,
            policy="arith-weak",
            n_traj=3,
            n_mc=4,
            out=root / split,
            limit=30,
            batch_problems=30,
            progress=False,
        )
    return root


@pytest.mark.parametrize("method", METHODS)
def test_every_method_fits_saves_and_loads(folders, method, zoo_prm):
    out = folders / f"cal-{method}"
    info = ias.calibrate(folders / "calib", prm="arith-prm", method=method, out=out)
    saved = json.loads((out / "calibration.json").read_text())
    assert saved["method"] == method and saved["policy"] == "arith-weak" and saved["prm"] == "arith-prm"
    assert saved["data"]["rows"] + saved["data"]["unreadable_rows"] > 0
    assert info["metrics_held_out"]["rows"] == saved["data"]["held_out_rows"] > 0
    prm = calibrated_prm(zoo_prm, out)
    [reading] = prm.score([("Compute 5+3.", ["5+3=8", "\\boxed{8}"])])
    assert len(reading.scores) == 2 and all(0 <= s <= 1 for s in reading.scores)
    assert len(reading.quantiles[0]) == len(saved["levels"])
    assert all(list(q) == sorted(q) for q in reading.quantiles)


def test_calib_eval_compares_methods_on_other_rollouts(folders, tmp_path):
    report = ias.calib_eval(folders / "test", prm="arith-prm", out=tmp_path, compare=folders / "calib")
    compare = json.loads((tmp_path / "compare.json").read_text())
    assert set(compare["methods"]) == {"uncalibrated", *METHODS}
    raw, fitted = report["methods"]["uncalibrated"], report["methods"]["quantile-head"]
    # The zoo PRM learned from the strong policy: for the weak one it over-estimates, and
    # calibrating on other problems' rollouts of the weak policy removes much of that.
    assert fitted["overestimation"] < 0.7 * raw["overestimation"]
    assert fitted["brier"] < raw["brier"]
    assert set(report["methods"]["quantile-head"]["coverage"]) == {"0.1", "0.5", "0.9"}
    assert report["methods"]["uncalibrated"]["brier_by_step"]
    assert (tmp_path / "reliability.png").stat().st_size > 10_000


def test_conformal_shift_gives_its_guarantee():
    rng = np.random.default_rng(0)
    target = rng.uniform(size=4000)
    lower = np.clip(target + rng.normal(0.1, 0.2, size=4000), 0, 1)  # an over-confident lower bound
    shift = conformal_shift(lower[:2000], target[:2000], alpha=0.1)
    assert shift > 0
    held = np.mean(target[2000:] >= lower[2000:] - shift)
    assert 0.87 <= held <= 0.95  # exchangeable fresh data: >= 1 - alpha up to sampling noise
    assert conformal_shift(np.zeros(10), np.ones(10), 0.1) == 0.0  # already conservative: no shift


@pytest.mark.slow
def test_solve_with_a_calibrator_and_user_errors(folders, tmp_path, cli):
    out = folders / "cal-cli"
    done = cli(
        "calibrate",
        "--rollouts",
        str(folders / "calib"),
        "--method",
        "quantile-head",
        "--conformal",
        "0.1",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "calibration.json").read_text())["conformal"]["alpha"] == 0.1
    summary = ias.solve(n=4, limit=3, out=tmp_path / "run", calibrator=out, progress=False)
    assert summary["config"]["calibrator"] == str(out)
    record = json.loads((tmp_path / "run" / "records.jsonl").read_text().splitlines()[0])
    assert all(0 <= s["score"] <= 1 for s in record["samples"])
    for args, message in (
        (["--method", "magic"], "unknown calibration method"),
        (["--method", "isotonic", "--conformal", "0.1"], "needs a quantile method"),
        (["--levels", "0.5,0.1"], "increasing"),
    ):
        bad = cli("calibrate", "--rollouts", str(folders / "calib"), "--out", str(tmp_path / "bad"), *args)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
    with pytest.raises(UserError, match="not a calibrator folder"):
        load_calibrator(tmp_path)
