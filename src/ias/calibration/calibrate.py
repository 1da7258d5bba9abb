"""`ias calibrate`: fit a calibrator on rollouts, save it as a folder, and load it back as a PRM.

A calibrator maps the PRM's reading at a step tag (its score, and for `quantile-head` its
hidden state) to quantiles of the policy's success probability. The folder holds
`calibration.json` (method, levels, policy, PRM, data, metrics, conformal shift, version)
and, for `quantile-head`, the head's weights. `CalibratedPRM` wraps a PRM with it and is
accepted anywhere a PRM is.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ias.calibration.metrics import brier, coverage, ece, overestimation
from ias.calibration.posthoc import BASELINES, baseline_from_dict
from ias.calibration.quantile_head import LEVELS, QuantileHead, fit_quantile_head, prm_readings, split_by_problem
from ias.calibration.store import load_targets, read_config
from ias.errors import UserError
from ias.prm.base import PRM, StepScores
from ias.records import write_json

CALIBRATION_FILE = "calibration.json"
METHODS = ("quantile-head", *BASELINES)


@dataclass
class Calibrator:
    """Quantiles of success from PRM readings: a quantile head or a post-hoc map of the score."""

    method: str
    levels: tuple[float, ...]
    head: QuantileHead | None = None
    posthoc: object | None = None
    shift: float = 0.0  # conformal: subtracted from the lowest quantile

    def predict(self, score: np.ndarray, hidden: np.ndarray | None) -> np.ndarray:
        """[N, levels] quantiles; a post-hoc method gives one calibrated value (its level 0.5)."""
        if self.head is not None:
            q = self.head.predict(score, hidden)
        else:
            q = np.asarray(self.posthoc.predict(score), dtype=np.float32)[:, None]
        if self.shift:
            q = q.copy()
            q[:, 0] = np.clip(q[:, 0] - self.shift, 0.0, 1.0)
        return q

    @property
    def needs_hidden(self) -> bool:
        return self.head is not None

    @property
    def median_index(self) -> int:
        return median_column(self.levels)


def median_column(levels: Sequence[float]) -> int:
    """The column of the level nearest 0.5: the point estimate every metric and ranking uses."""
    return min(range(len(levels)), key=lambda i: abs(levels[i] - 0.5))


def load_calibrator(folder: str | Path) -> Calibrator:
    path = Path(folder) / CALIBRATION_FILE
    if not path.exists():
        raise UserError(f"{folder} is not a calibrator folder (no {CALIBRATION_FILE}); make one with `ias calibrate`")
    info = json.loads(path.read_text())
    shift = float((info.get("conformal") or {}).get("shift", 0.0))
    if info["method"] == "quantile-head":
        head = QuantileHead.load(folder)
        return Calibrator("quantile-head", head.levels, head=head, shift=shift)
    return Calibrator(info["method"], (0.5,), posthoc=baseline_from_dict(info["posthoc"]))


def calibrate(
    rollouts: str | Path,
    prm: PRM,
    method: str,
    out: str | Path,
    levels: Sequence[float] = LEVELS,
    conformal: float | None = None,
    held_out: float = 0.2,
    seed: int = 0,
) -> dict:
    """Fit `method` on the rollouts (a share `held_out` of problems kept aside for metrics and
    the conformal shift), save the calibrator folder, return its `calibration.json`."""
    if method not in METHODS:
        raise UserError(f"unknown calibration method '{method}'; known: {', '.join(METHODS)}")
    if conformal is not None and not (0 < conformal < 1 and method == "quantile-head"):
        raise UserError("--conformal ALPHA needs a quantile method and 0 < ALPHA < 1")
    if not 0 <= held_out < 1:
        raise UserError(f"held-out share must be in [0, 1), got {held_out}")
    all_rows = load_targets(rollouts)
    score, hidden, kept = prm_readings(prm, all_rows)
    rows = [all_rows[k] for k in kept]
    target = np.array([r.p for r in rows], dtype=np.float32)
    fit, held = split_by_problem(rows, held_out, seed)
    if conformal is not None and not held:
        raise UserError("--conformal needs held-out problems; use a held-out share > 0")
    started = time.time()
    if method == "quantile-head":
        head = fit_quantile_head(score[fit], hidden[fit], target[fit], levels, seed=seed)
        calibrator = Calibrator(method, head.levels, head=head)
    else:
        calibrator = Calibrator(method, (0.5,), posthoc=BASELINES[method]().fit(score[fit], target[fit]))
    fit_seconds = time.time() - started
    conformal_info = None
    if conformal is not None:
        calibrator.shift = conformal_shift(calibrator.predict(score[held], hidden[held])[:, 0], target[held], conformal)
        conformal_info = {"alpha": conformal, "shift": calibrator.shift, "rows": len(held)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if calibrator.head is not None:
        calibrator.head.save(out)
    from ias import __version__

    rollout_config = read_config(rollouts)
    info = {
        "method": method,
        "levels": list(calibrator.levels),
        "policy": rollout_config.get("policy"),
        "prm": getattr(prm, "name", None),
        "data": {"rollouts": str(rollouts), "rows": len(rows), "unreadable_rows": len(all_rows) - len(rows),
                 "fit_rows": len(fit), "held_out_rows": len(held),
                 "task": rollout_config.get("task"), "split": rollout_config.get("split")},
        "fit_seconds": round(fit_seconds, 2),
        "metrics_held_out": metrics(calibrator.predict(score[held], hidden[held]), target[held], calibrator.levels)
        if held else None,
        "conformal": conformal_info,
        "posthoc": calibrator.posthoc.to_dict() if calibrator.posthoc is not None else None,
        "version": __version__,
    }
    write_json(out / CALIBRATION_FILE, info)
    return info


def conformal_shift(lower: np.ndarray, target: np.ndarray, alpha: float) -> float:
    """One-sided split conformal: the shift s >= 0 with P(p >= lower - s) >= 1 - alpha.

    The ceil((n+1)(1-alpha))-th smallest of the excesses `lower - p` (SPEC §3's conformal step).
    """
    excess = np.sort(lower - target)
    k = math.ceil((len(excess) + 1) * (1 - alpha))
    return float(max(0.0, excess[min(k, len(excess)) - 1]))


def metrics(q: np.ndarray, p: np.ndarray, levels: Sequence[float]) -> dict:
    """Brier, over-estimation and ECE of the median (or the point estimate), coverage per level."""
    median = q[:, median_column(levels)]
    return {
        "brier": round(brier(median, p), 4),
        "overestimation": round(overestimation(median, p), 4),
        "ece": round(ece(median, p), 4),
        "coverage": {str(b): round(coverage(q[:, i], p), 4) for i, b in enumerate(levels)} if len(levels) > 1 else {},
        "rows": int(len(p)),
    }


class CalibratedPRM:
    """A PRM whose step scores are calibrated: `scores` hold the median, `quantiles` all levels."""

    def __init__(self, prm: PRM, calibrator: Calibrator):
        self.prm = prm
        self.calibrator = calibrator
        self.name = f"{getattr(prm, 'name', 'prm')}+{calibrator.method}"

    def score(self, items: Sequence[tuple[str, list[str]]], hidden: bool = False) -> list[StepScores]:
        readings = self.prm.score(items, hidden=self.calibrator.needs_hidden or hidden)
        for reading in readings:
            if reading.skipped or not reading.scores:
                continue
            q = self.calibrator.predict(np.asarray(reading.scores, dtype=np.float32), reading.hidden)
            reading.raw_scores = reading.scores
            reading.quantiles = q.tolist()
            reading.scores = q[:, self.calibrator.median_index].tolist()
        return readings
