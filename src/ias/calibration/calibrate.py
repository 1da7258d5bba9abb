"""`ias calibrate`: fit a calibrator on rollouts, save it as a folder, and load it back as a PRM.

A calibrator turns the PRM's reading at a step tag into quantiles of the policy's success
probability. Every method implements `calibrator.Calibrator` (fit, predict, save, load, wrap)
and is found by name in `registry.CALIBRATORS`: `quantile-head` and the baselines map the
reading after the PRM, `quantile-lora` changes the PRM itself. The folder holds
`calibration.json` (method, levels, policy, PRM, data, metrics, conformal shift, the method's
own fields, version) and the weights. `calibrated_prm(prm, folder)` gives a PRM, accepted
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
from typing import Any, Sequence

import numpy as np
from safetensors import SafetensorError

from ias.calibration.calibrator import LEVELS, Calibrator, Prefixes, check_levels, median_column
from ias.calibration.metrics import brier, coverage, ece, overestimation
from ias.calibration.quantile_head import read_prefixes, split_by_problem
from ias.calibration.registry import CALIBRATORS, calibrator_class
from ias.calibration.store import TargetRow, load_targets, read_config, target_resolution
from ias.errors import UserError
from ias.models import require_whole_weights
from ias.prm.base import PRM, require_readable
from ias.records import write_json

CALIBRATION_FILE = "calibration.json"
METHODS = tuple(CALIBRATORS)  # the built-in methods, in `--compare` order
QUANTILE_METHODS = tuple(name for name, kind in CALIBRATORS.items() if kind.quantiles)
# Fields a method's `save` fills (the baselines' map, quantile-lora's settings), null for the
# others: every calibration.json has them, as files written before the registry do.
METHOD_FIELDS: dict[str, Any] = {"posthoc": None, "lora": None}


def load_calibrator(folder: str | Path, prm: PRM | None = None) -> Calibrator:
    """The calibrator in `folder`, checked against the `prm` it will read (one that changes the
    PRM loads onto it, and cannot load without it)."""
    info = read_calibration(folder) if prm is None else read_calibration_for(prm, folder)
    kind = calibrator_class(info["method"])
    if kind.changes_prm and prm is None:
        raise UserError(f"{folder} is a {info['method']} calibrator: it changes the PRM; load it with calibrated_prm")
    with _loading(folder):
        calibrator = kind.load(Path(folder), info, prm)
    calibrator.shift = _shift(info)
    return calibrator


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
    if not isinstance(info, dict) or info.get("method") not in CALIBRATORS:
        raise UserError(f"{path} names no calibration method; {_refit(folder)}")
    return info


def read_calibration_for(prm: PRM, folder: str | Path) -> dict:
    """`calibration.json` of a calibrator checked against the PRM it is applied to: one fitted
    on another PRM's readings would map numbers it never saw, silently."""
    info = read_calibration(folder)
    fitted, given = info.get("prm"), prm.name
    if fitted is not None and _prm_key(fitted) != _prm_key(given):
        raise UserError(
            f"calibrator {folder} was fitted for PRM {fitted}, not {given}; fit one with `ias calibrate --prm {given}`"
        )
    return info


def _prm_key(name: str) -> str:
    """A PRM name comparable across spellings: a local folder by its resolved path."""
    path = Path(name).expanduser()
    return str(path.resolve()) if path.is_dir() else name


def _shift(info: dict) -> float:
    return float((info.get("conformal") or {}).get("shift", 0.0))


def calibrated_prm(prm: PRM, folder: str | Path) -> PRM:
    """`prm` calibrated by the calibrator in `folder`: scores are medians, `quantiles` all levels."""
    return load_calibrator(folder, prm).wrap(prm)


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
    `lora` overrides the method's settings (quantile-lora: rank, alpha, dropout, every, epochs, lr, batch_rows).
    """
    kind = calibrator_class(method)
    levels = check_levels(levels)
    settings = kind.check_settings(method, lora)
    if conformal is not None and not (0 < conformal < 1 and kind.quantiles):
        raise UserError("--conformal ALPHA needs a quantile method and 0 < ALPHA < 1")
    if not 0 <= held_out < 1:
        raise UserError(f"held-out share must be in [0, 1), got {held_out}")
    readable = require_readable(prm, "calibration")
    all_rows = load_targets(rollouts)
    data = read_prefixes(readable, all_rows, hidden=kind.needs_hidden)
    split = split_rows(data.rows, held_out, conformal, seed)
    started = time.time()
    calibrator = kind.fit(method, readable, data.take(split.fit), levels, seed, settings)
    fit_seconds = time.time() - started
    shift = fit_conformal(calibrator, data.take(split.conformal), conformal) if conformal is not None else None
    held_metrics = held_out_metrics(calibrator, data, split)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    own = calibrator.save(out)
    from ias.version import __version__

    config = read_config(rollouts)
    info = {
        "method": method,
        "levels": list(calibrator.levels),
        "policy": config.get("policy"),
        "prm": prm.name,
        "data": data_info(rollouts, config, data.rows, len(all_rows), split),
        "fit_seconds": round(fit_seconds, 2),
        "metrics_held_out": held_metrics,
        "conformal": shift,
        **METHOD_FIELDS,
        "version": __version__,
    }
    info.update(own)
    write_json(out / CALIBRATION_FILE, info)
    return info


@dataclass(frozen=True)
class Split:
    """Row indices: fitted on, held out, and of the held-out ones those that fit the conformal
    shift and those the metrics are measured on."""

    fit: list[int]
    held: list[int]
    conformal: list[int]
    scored: list[int]


def split_rows(rows: Sequence[TargetRow], held_out: float, conformal: float | None, seed: int) -> Split:
    """Rows split by problem (never by prefix); a split that is refused is refused before any fit."""
    fit, held = split_by_problem(rows, held_out, seed)
    if not fit:
        problems = len({r.problem_id for r in rows})
        raise UserError(
            f"--held-out {held_out} of {problems} problem(s) holds out every one, leaving none to fit "
            "on; lower --held-out or roll out more problems"
        )
    if conformal is None:
        return Split(fit, held, [], held)
    conf, scored = conformal_split(rows, held, seed)
    conformal_rank(len(conf), conformal)  # refused now, not after a long fit
    return Split(fit, held, conf, scored)


def fit_conformal(calibrator: Calibrator, data: Prefixes, alpha: float) -> dict:
    """Sets the calibrator's conformal shift from `data`; returns `calibration.json`'s `conformal`."""
    calibrator.shift = conformal_shift(calibrator.predict(data)[:, 0], data.target, alpha)
    return {"alpha": alpha, "shift": calibrator.shift, "rows": len(data.rows)}


def held_out_metrics(calibrator: Calibrator, data: Prefixes, split: Split) -> dict | None:
    """Metrics on the held-out rows that neither the fit nor the conformal shift saw (None if none)."""
    if not split.scored:
        return None
    scored = data.take(split.scored)
    return metrics(calibrator.predict(scored), scored.target, calibrator.levels, target_resolution(data.rows))


def data_info(rollouts: str | Path, config: dict, rows: list[TargetRow], total: int, split: Split) -> dict:
    """`calibration.json`'s `data`: where the rows came from and how they were used."""
    return {
        "rollouts": str(Path(rollouts).resolve()),
        "rows": len(rows),
        "unreadable_rows": total - len(rows),
        "fit_rows": len(split.fit),
        "held_out_rows": len(split.held),
        "conformal_rows": len(split.conformal),
        "metrics_rows": len(split.scored),
        "held_out_problems": sorted({rows[i].problem_id for i in split.scored}),
        "task": config.get("task"),
        "split": config.get("split"),
    }


def conformal_split(rows: Sequence, held: list[int], seed: int) -> tuple[list[int], list[int]]:
    """Held-out row indices split by problem into (fits the conformal shift, measures it)."""
    problems = len({rows[i].problem_id for i in held})
    if problems < 2:
        raise UserError(
            f"--conformal needs at least 2 held-out problems (one part fits the shift, the other "
            f"measures it), got {problems}; raise --held-out or roll out more problems"
        )
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
        raise UserError(
            f"--conformal {alpha} needs at least {need} held-out rows to fit its shift, got {n}; "
            "raise --held-out, roll out more problems or raise ALPHA"
        )
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
        "coverage_with_ties": {
            str(b): round(coverage(q[:, i], p, resolution, inclusive=True), 4) for i, b in enumerate(levels)
        }
        if quantile
        else {},
        "rows": int(len(p)),
    }
