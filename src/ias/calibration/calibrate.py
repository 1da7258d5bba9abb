"""`ias calibrate`: fit a calibrator on rollouts, save it as a folder, and load it back as a PRM.

A calibrator turns the PRM's reading at a step tag into quantiles of the policy's success
probability: `quantile-head` and the baselines map the reading (score, hidden state) after
the PRM; `quantile-lora` changes the PRM itself (an adapter and a quantile reader). The
folder holds `calibration.json` (method, levels, policy, PRM, data, metrics, conformal
shift, version) and the weights. `calibrated_prm(prm, folder)` gives a PRM, accepted
anywhere a PRM is, whose scores are calibrated medians.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from safetensors import SafetensorError

from ias.calibration.metrics import brier, coverage, ece, overestimation
from ias.calibration.posthoc import BASELINES, baseline_from_dict
from ias.calibration.quantile_head import (
    LEVELS,
    QuantileHead,
    check_levels,
    fit_quantile_head,
    median_column,
    prm_readings,
    split_by_problem,
)
from ias.calibration.quantile_lora import (
    LORA_DEFAULTS,
    fit_quantile_lora,
    load_quantile_lora,
    quantiles_of,
    save_quantile_lora,
)
from ias.calibration.store import load_targets, read_config, target_resolution
from ias.errors import UserError
from ias.models import require_whole_weights
from ias.prm.base import PRM, StepScores
from ias.records import write_json

CALIBRATION_FILE = "calibration.json"
METHODS = ("quantile-lora", "quantile-head", *BASELINES)
QUANTILE_METHODS = ("quantile-lora", "quantile-head")


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
        return lowered(q, self.shift)

    @property
    def needs_hidden(self) -> bool:
        return self.head is not None

    @property
    def median_index(self) -> int:
        return median_column(self.levels)


def load_calibrator(folder: str | Path) -> Calibrator:
    """A map-after-the-PRM calibrator (quantile-head or a baseline) from its folder."""
    info = read_calibration(folder)
    if info["method"] == "quantile-lora":
        raise UserError(f"{folder} is a quantile-lora calibrator: it changes the PRM; load it with calibrated_prm")
    with _loading(folder):
        if info["method"] == "quantile-head":
            head = QuantileHead.load(folder)
            return Calibrator("quantile-head", head.levels, head=head, shift=_shift(info))
        return Calibrator(info["method"], (0.5,), posthoc=baseline_from_dict(info["posthoc"]))


def _refit(folder: str | Path) -> str:
    return f"refit it with `ias calibrate ... --out {folder}`"


@contextmanager
def _loading(folder: str | Path) -> Iterator[None]:
    """Loading a calibrator's weights: a truncated or garbled file is a one-line error naming
    it (checked first), and any other damage one naming the folder."""
    require_whole_weights(folder, _refit(folder))
    try:
        yield
    except (OSError, ValueError, KeyError, IndexError, TypeError, RuntimeError, SafetensorError) as err:
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        raise UserError(f"calibrator {folder} is damaged ({reason}); {_refit(folder)}") from None


def read_calibration(folder: str | Path) -> dict:
    """A calibrator's `calibration.json`; missing, truncated or not a calibrator's is one line."""
    path = Path(folder) / CALIBRATION_FILE
    if not path.exists():
        raise UserError(f"{folder} is not a calibrator folder (no {CALIBRATION_FILE}); make one with `ias calibrate`")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:  # ValueError: bad JSON or bad UTF-8
        raise UserError(f"{path} is damaged or truncated ({type(err).__name__}); {_refit(folder)}") from None
    if not isinstance(info, dict) or info.get("method") not in METHODS:
        raise UserError(f"{path} names no calibration method; {_refit(folder)}")
    return info


def read_calibration_for(prm: PRM, folder: str | Path) -> dict:
    """`calibration.json` of a calibrator checked against the PRM it is applied to: one fitted
    on another PRM's readings would map numbers it never saw, silently."""
    info = read_calibration(folder)
    fitted, given = info.get("prm"), getattr(prm, "name", None)
    if fitted is not None and given is not None and _prm_key(fitted) != _prm_key(given):
        raise UserError(f"calibrator {folder} was fitted for PRM {fitted}, not {given}; "
                        f"fit one with `ias calibrate --prm {given}`")
    return info


def _prm_key(name: str) -> str:
    """A PRM name comparable across spellings: a local folder by its resolved path."""
    path = Path(name).expanduser()
    return str(path.resolve()) if path.is_dir() else name


def _shift(info: dict) -> float:
    return float((info.get("conformal") or {}).get("shift", 0.0))


def lowered(q: np.ndarray, shift: float) -> np.ndarray:
    """`q` with the conformal shift subtracted from its lowest quantile (clipped at 0)."""
    if not shift:
        return q
    q = q.copy()
    q[:, 0] = np.clip(q[:, 0] - shift, 0.0, 1.0)
    return q


def calibrated_prm(prm: PRM, folder: str | Path) -> PRM:
    """`prm` calibrated by the calibrator in `folder`: scores are medians, `quantiles` all levels."""
    info = read_calibration_for(prm, folder)
    if info["method"] == "quantile-lora":
        with _loading(folder):
            adapted = load_quantile_lora(prm, Path(folder))
        adapted.quantile_reader.shift = _shift(info)
        return adapted
    return CalibratedPRM(prm, load_calibrator(folder))


def calibrate(
    rollouts: str | Path,
    prm: PRM,
    method: str,
    out: str | Path,
    levels: Sequence[float] = LEVELS,
    conformal: float | None = None,
    held_out: float = 0.2,
    seed: int = 0,
    lora: dict | None = None,
) -> dict:
    """Fit `method` on the rollouts (a share `held_out` of problems kept aside), save the
    calibrator folder, return its `calibration.json`.

    The held-out problems give the metrics; with `conformal` they are split by problem into
    a part that fits the shift and a part that measures it (metrics on the shift's own rows
    would be in-sample coverage). `data.held_out_problems` lists the problems nothing was
    fitted on, so `calib-eval` on the same rollouts scores only those.
    `lora` overrides quantile-lora's settings (rank, alpha, dropout, every, epochs, lr, batch_rows).
    """
    if method not in METHODS:
        raise UserError(f"unknown calibration method '{method}'; known: {', '.join(METHODS)}")
    levels = check_levels(levels)
    if conformal is not None and not (0 < conformal < 1 and method in QUANTILE_METHODS):
        raise UserError("--conformal ALPHA needs a quantile method and 0 < ALPHA < 1")
    if not 0 <= held_out < 1:
        raise UserError(f"held-out share must be in [0, 1), got {held_out}")
    all_rows = load_targets(rollouts)
    score, hidden, _, kept = prm_readings(prm, all_rows)
    rows = [all_rows[k] for k in kept]
    target = np.array([r.p for r in rows], dtype=np.float32)
    fit, held = split_by_problem(rows, held_out, seed)
    if not fit:
        problems = len({r.problem_id for r in rows})
        raise UserError(f"--held-out {held_out} of {problems} problem(s) holds out every one, leaving none to fit "
                        "on; lower --held-out or roll out more problems")
    conf, scored = conformal_split(rows, held, seed) if conformal is not None else ([], held)
    if conformal is not None:
        conformal_rank(len(conf), conformal)  # refused now, not after a long fit
    out = Path(out)
    started = time.time()
    if method == "quantile-lora":
        adapted = fit_quantile_lora(prm, [rows[i] for i in fit], levels, seed, lora)
        calibrator = Calibrator(method, adapted.quantile_reader.levels)

        def predict(idx: list[int]) -> np.ndarray:
            return lowered(quantiles_of(adapted, [rows[i] for i in idx]), calibrator.shift)
    else:
        if method == "quantile-head":
            head = fit_quantile_head(score[fit], hidden[fit], target[fit], levels, seed=seed)
            calibrator = Calibrator(method, head.levels, head=head)
        else:
            calibrator = Calibrator(method, (0.5,), posthoc=BASELINES[method]().fit(score[fit], target[fit]))

        def predict(idx: list[int]) -> np.ndarray:
            return calibrator.predict(score[idx], hidden[idx])
    fit_seconds = time.time() - started
    conformal_info = None
    if conformal is not None:
        calibrator.shift = conformal_shift(predict(conf)[:, 0], target[conf], conformal)
        conformal_info = {"alpha": conformal, "shift": calibrator.shift, "rows": len(conf)}
    scored_q = predict(scored) if scored else None
    out.mkdir(parents=True, exist_ok=True)
    if method == "quantile-lora":
        save_quantile_lora(adapted, out)
    elif calibrator.head is not None:
        calibrator.head.save(out)
    from ias import __version__

    rollout_config = read_config(rollouts)
    info = {
        "method": method,
        "levels": list(calibrator.levels),
        "policy": rollout_config.get("policy"),
        "prm": getattr(prm, "name", None),
        "data": {"rollouts": str(Path(rollouts).resolve()), "rows": len(rows),
                 "unreadable_rows": len(all_rows) - len(rows),
                 "fit_rows": len(fit), "held_out_rows": len(held), "conformal_rows": len(conf),
                 "metrics_rows": len(scored), "held_out_problems": sorted({rows[i].problem_id for i in scored}),
                 "task": rollout_config.get("task"), "split": rollout_config.get("split")},
        "fit_seconds": round(fit_seconds, 2),
        "metrics_held_out": (
            metrics(scored_q, target[scored], calibrator.levels, target_resolution(rows)) if scored else None
        ),
        "conformal": conformal_info,
        "posthoc": calibrator.posthoc.to_dict() if calibrator.posthoc is not None else None,
        "lora": {**LORA_DEFAULTS, **(lora or {})} if method == "quantile-lora" else None,
        "version": __version__,
    }
    write_json(out / CALIBRATION_FILE, info)
    return info


def conformal_split(rows: Sequence, held: list[int], seed: int) -> tuple[list[int], list[int]]:
    """Held-out row indices split by problem into (fits the conformal shift, measures it)."""
    problems = len({rows[i].problem_id for i in held})
    if problems < 2:
        raise UserError(f"--conformal needs at least 2 held-out problems (one part fits the shift, the other "
                        f"measures it), got {problems}; raise --held-out or roll out more problems")
    measure, shift = split_by_problem([rows[i] for i in held], 0.5, seed)
    return [held[i] for i in shift], [held[i] for i in measure]


def conformal_shift(lower: np.ndarray, target: np.ndarray, alpha: float) -> float:
    """One-sided split conformal: the shift s >= 0 with P(p >= lower - s) >= 1 - alpha.

    The ceil((n+1)(1-alpha))-th smallest of the excesses `lower - p` (SPEC §3's conformal step).
    """
    excess = np.sort(lower - target)
    return float(max(0.0, excess[conformal_rank(len(excess), alpha) - 1]))


def conformal_rank(n: int, alpha: float) -> int:
    """k = ceil((n+1)(1-alpha)); k > n means n rows cannot give the guarantee at this alpha
    (the shift would be infinite), which is refused rather than weakened."""
    k = math.ceil((n + 1) * (1 - alpha))
    if k > n:
        need = max(1, math.floor((1 - alpha) / alpha) - 1)  # about the least; step up past rounding
        while math.ceil((need + 1) * (1 - alpha)) > need:
            need += 1
        raise UserError(f"--conformal {alpha} needs at least {need} held-out rows to fit its shift, got {n}; "
                        "raise --held-out, roll out more problems or raise ALPHA")
    return k


def metrics(q: np.ndarray, p: np.ndarray, levels: Sequence[float], resolution: float = 0.0) -> dict:
    """Brier, over-estimation and ECE of the median (or the point estimate), coverage per level.

    Coverage is measured at the targets' `resolution` (see `metrics.coverage`): `coverage` counts
    targets clearly below the quantile, `coverage_with_ties` also those tied with it; a right
    quantile of targets with atoms has `coverage <= level <= coverage_with_ties`.
    """
    median = q[:, median_column(levels)]
    quantile = len(levels) > 1
    return {
        "brier": round(brier(median, p), 4),
        "overestimation": round(overestimation(median, p), 4),
        "ece": round(ece(median, p), 4),
        "coverage": (
            {str(b): round(coverage(q[:, i], p, resolution), 4) for i, b in enumerate(levels)} if quantile else {}
        ),
        "coverage_with_ties": {str(b): round(coverage(q[:, i], p, resolution, inclusive=True), 4)
                               for i, b in enumerate(levels)} if quantile else {},
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
