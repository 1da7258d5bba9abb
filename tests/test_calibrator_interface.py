"""The calibrator interface: a new method is one class and one registry line, calibrators saved
in today's `calibration.json` format load, and a PRM that offers only scores gets one line
where a calibrator must read more of it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ias
from ias.calibration.calibrate import calibrate, calibrated_prm, load_calibrator
from ias.calibration.calibrator import Calibrator, MapCalibrator, Prefixes
from ias.calibration.quantile_head import QuantileHead
from ias.calibration.quantile_lora import LORA_DEFAULTS, fit_quantile_lora, save_quantile_lora
from ias.calibration.registry import CALIBRATORS
from ias.calibration.store import TargetRow, load_targets
from ias.errors import UserError
from ias.prm.base import PRM, StepScores

ITEMS = [("Compute 5+3.", ["5+3=8", "\\boxed{8}"]), ("Compute 7*6.", ["7*6=41", "\\boxed{41}"]), ("Compute 2*9.", [])]


class MeanCalibrator(MapCalibrator):
    """Every reading maps to the mean target it was fitted on: the least a calibrator can be."""

    quantiles = False

    def __init__(self, method: str, mean: float):
        super().__init__(method, (0.5,))
        self.mean = mean

    @classmethod
    def fit(
        cls, method: str, prm: PRM, data: Prefixes, levels: tuple[float, ...], seed: int, settings: dict[str, Any]
    ) -> Calibrator:
        return cls(method, float(data.target.mean()))

    def map(self, score: np.ndarray, hidden: np.ndarray | None) -> np.ndarray:
        return np.full((len(score), 1), self.mean, dtype=np.float32)

    def save(self, folder: Path) -> dict[str, Any]:
        (folder / "mean.json").write_text(json.dumps({"mean": self.mean}))
        return {"mean_rows": "all"}

    @classmethod
    def load(cls, folder: Path, info: dict[str, Any], prm: PRM | None) -> Calibrator:
        return cls(info["method"], json.loads((folder / "mean.json").read_text())["mean"])


def test_a_new_method_is_one_class_and_one_registry_line(small_rollouts, zoo_prm, tmp_path, monkeypatch):
    monkeypatch.setitem(CALIBRATORS, "mean", MeanCalibrator)  # the registry line
    cal = tmp_path / "cal"
    info = ias.calibrate(small_rollouts, prm="arith-prm", method="mean", out=cal)
    saved = json.loads((cal / "calibration.json").read_text())
    assert saved == info and saved["method"] == "mean" and saved["mean_rows"] == "all"
    assert saved["posthoc"] is None and saved["lora"] is None and saved["levels"] == [0.5]
    held = set(saved["data"]["held_out_problems"])
    rows = load_targets(small_rollouts)
    assert saved["data"]["unreadable_rows"] == 0 and 0 < len(held) < len({r.problem_id for r in rows})
    mean = np.mean([r.p for r in rows if r.problem_id not in held], dtype=np.float32)
    assert json.loads((cal / "mean.json").read_text())["mean"] == pytest.approx(mean)

    calibrated = calibrated_prm(zoo_prm, cal)
    assert calibrated.name == "arith-prm+mean"
    plain = zoo_prm.score(ITEMS)
    for raw, reading in zip(plain, calibrated.score(ITEMS)):
        assert reading.raw_scores == raw.scores
        assert reading.scores == pytest.approx([mean] * len(raw.scores))
        assert np.allclose(reading.quantiles, [[mean]] * len(raw.scores))

    report = ias.calib_eval(small_rollouts, prm="arith-prm", calibrator=cal, out=tmp_path / "eval")
    p = np.array([r.p for r in rows if r.problem_id in held])
    assert report["held_out_only"] and report["methods"]["calibrated"]["rows"] == len(p)
    assert report["methods"]["calibrated"]["brier"] == pytest.approx(float(np.mean((mean - p) ** 2)), abs=1e-4)
    with pytest.raises(UserError, match=r"^unknown calibration method 'magic'; known: .*\bmean\b"):
        ias.calibrate(small_rollouts, prm="arith-prm", method="magic", out=tmp_path / "bad")


def _todays_json(folder: Path, method: str, levels: list[float], shift: float, **fields: Any) -> Path:
    """A `calibration.json` in the format written before the calibrator registry, by hand."""
    folder.mkdir(parents=True, exist_ok=True)
    info = {
        "method": method,
        "levels": levels,
        "policy": "arith-weak",
        "prm": "arith-prm",
        "data": {
            "rollouts": "/nowhere/rollouts",
            "rows": 40,
            "unreadable_rows": 0,
            "fit_rows": 30,
            "held_out_rows": 10,
            "conformal_rows": 5 if shift else 0,
            "metrics_rows": 5 if shift else 10,
            "held_out_problems": ["calib-1", "calib-2"],
            "task": "arith",
            "split": "calib",
        },
        "fit_seconds": 1.5,
        "metrics_held_out": None,
        "conformal": {"alpha": 0.2, "shift": shift, "rows": 5} if shift else None,
        "posthoc": None,
        "lora": None,
        "version": "0.1.0",
        **fields,
    }
    (folder / "calibration.json").write_text(json.dumps(info, indent=2))
    return folder


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


def test_calibrators_written_in_todays_format_load(zoo_prm, tmp_path):
    plain = np.concatenate([r.scores for r in zoo_prm.score(ITEMS)])
    maps = {
        "temperature": (
            {"method": "temperature", "temperature": 2.0, "bounds": [0.01, 100.0]},
            1 / (1 + np.exp(-_logit(plain) / 2.0)),
        ),
        "isotonic": ({"method": "isotonic", "x": [0.0, 1.0], "y": [0.2, 0.6]}, 0.2 + 0.4 * plain),
        "histogram": ({"method": "histogram", "bins": 2, "values": [0.1, None]}, np.where(plain < 0.5, 0.1, plain)),
    }
    for method, (posthoc, expected) in maps.items():
        folder = _todays_json(tmp_path / method, method, [0.5], 0.0, posthoc=posthoc)
        scores = np.concatenate([r.scores for r in calibrated_prm(zoo_prm, folder).score(ITEMS)])
        assert np.allclose(scores, expected, atol=1e-5), method
        assert load_calibrator(folder).levels == (0.5,)

    # An untrained head reads every quantile as the PRM's own probability; the shift lowers the lowest.
    levels, shift = [0.1, 0.5, 0.9], 0.05
    folder = _todays_json(tmp_path / "head", "quantile-head", levels, shift)
    QuantileHead(zoo_prm.model.config.hidden_size, levels).save(folder)
    q = np.concatenate([r.quantiles for r in calibrated_prm(zoo_prm, folder).score(ITEMS)])
    assert np.allclose(q[:, 1:], plain[:, None], atol=1e-4)
    assert np.allclose(q[:, 0], np.clip(plain - shift, 0, 1), atol=1e-4)


def test_a_quantile_lora_calibrator_in_todays_format_loads(zoo_prm, tmp_path):
    """Its adapter and reader as quantile-lora saves them (untrained: the PRM's own reading)."""
    row = TargetRow("p0", 0, 1, ["5+3=8"], "Compute 5+3.", 1, 2, 0.5, False)
    folder = _todays_json(
        tmp_path / "lora", "quantile-lora", [0.1, 0.5, 0.9], 0.05, lora={**LORA_DEFAULTS, "epochs": 0}
    )
    save_quantile_lora(fit_quantile_lora(zoo_prm, [row], settings={"epochs": 0}), folder)
    plain = np.concatenate([r.scores for r in zoo_prm.score(ITEMS)])
    adapted = calibrated_prm(zoo_prm, folder)
    assert adapted.name == "arith-prm+quantile-lora"
    q = np.concatenate([r.quantiles for r in adapted.score(ITEMS)])
    assert np.allclose(q[:, 1:], plain[:, None], atol=1e-4)
    assert np.allclose(q[:, 0], np.clip(plain - 0.05, 0, 1), atol=1e-4)
    with pytest.raises(UserError, match="changes the PRM; load it with calibrated_prm"):
        load_calibrator(folder)


class ScoresOnly:
    """A PRM that offers what scaling needs (a name and scores) and nothing calibration reads."""

    def __init__(self, prm: PRM):
        self.name, self.prm = prm.name, prm

    def score(self, items) -> list[StepScores]:
        return self.prm.score(items)


def test_a_prm_that_only_scores_gets_one_line_where_more_is_read(zoo_prm, small_rollouts, tmp_path):
    scores_only = ScoresOnly(zoo_prm)
    with pytest.raises(
        UserError,
        match=r"^calibration reads the PRM's own inputs and hidden states, which PRM "
        r"'arith-prm' \(a ScoresOnly\) does not offer",
    ):
        calibrate(small_rollouts, scores_only, "isotonic", tmp_path / "c")
    head = _todays_json(tmp_path / "head", "quantile-head", [0.1, 0.5, 0.9], 0.0)
    QuantileHead(zoo_prm.model.config.hidden_size).save(head)
    with pytest.raises(UserError, match="^a quantile-head calibrator reads the PRM's own inputs and hidden states"):
        calibrated_prm(scores_only, head)
    lora = _todays_json(tmp_path / "lora", "quantile-lora", [0.1, 0.5, 0.9], 0.0)
    with pytest.raises(UserError, match="^quantile-lora calibration changes the PRM's own weights"):
        calibrated_prm(scores_only, lora)
    # A map of the score alone needs nothing more than scores.
    identity = {"method": "isotonic", "x": [0, 1], "y": [0, 1]}
    iso = _todays_json(tmp_path / "iso", "isotonic", [0.5], 0.0, posthoc=identity)
    plain = np.concatenate([r.scores for r in zoo_prm.score(ITEMS)])
    assert np.allclose(np.concatenate([r.scores for r in calibrated_prm(scores_only, iso).score(ITEMS)]), plain)
