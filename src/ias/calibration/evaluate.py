"""`ias calib-eval`: how well a PRM (raw, or calibrated) predicts a policy's success on rollouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ias.calibration.calibrate import calibrate, load_calibrator, metrics, read_calibration_for
from ias.calibration.calibrator import Calibrator, Prefixes, median_column
from ias.calibration.metrics import brier, by_step, reliability_plot
from ias.calibration.quantile_head import read_prefixes
from ias.calibration.registry import CALIBRATORS
from ias.calibration.store import TargetRow, load_targets, target_resolution
from ias.errors import UserError
from ias.prm.base import PRM, require_readable
from ias.records import write_json

COMPARED = ("brier", "overestimation", "ece", "coverage", "coverage_with_ties")  # compare.json's figures


def calib_eval(
    rollouts: str | Path,
    prm: PRM,
    out: str | Path,
    calibrator: str | Path | None = None,
    compare: str | Path | None = None,
    seed: int = 0,
) -> dict:
    """Metrics of the raw PRM and of `calibrator` on the rollouts' targets, by step too;
    with `compare` (a rollout folder to fit on), every method is fitted there and compared.

    On the calibrator's own rollout folder only its held-out problems are scored (every
    method on the same rows; `held_out_only` in the report says so).
    Writes `metrics.json`, `reliability.png` and, with `compare`, `compare.json`.
    """
    if compare is not None and same_folder(compare, rollouts):
        raise UserError(
            "--compare FIT_ROLLOUTS must be another rollout folder than --rollouts: every method "
            "would be scored on the rows it was fitted on"
        )
    readable = require_readable(prm, "calibration")
    only = (
        scored_problems(calibrator, read_calibration_for(prm, calibrator), rollouts) if calibrator is not None else None
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    all_rows = rows_to_score(rollouts, only, calibrator)
    calibrators = fitted_calibrators(prm, out, calibrator, compare, seed)
    data = read_prefixes(readable, all_rows, hidden=any(c.needs_hidden for c in calibrators.values()))
    table, medians = metrics_table(data, calibrators)
    report = {
        "rollouts": str(rollouts),
        "prm": prm.name,
        "rows": len(data.rows),
        "unreadable_rows": len(all_rows) - len(data.rows),
        "problems": len({r.problem_id for r in data.rows}),
        "held_out_only": only is not None,
        "methods": table,
    }
    write_json(out / "metrics.json", report)
    reliability_plot(out / "reliability.png", medians, data.target, title="Reliability on held-out rollouts")
    if compare is not None:
        write_json(
            out / "compare.json",
            {"methods": {k: {m: v[m] for m in COMPARED} for k, v in table.items() if k != "calibrated"}},
        )
    return report


def rows_to_score(rollouts: str | Path, only: set[str] | None, calibrator: str | Path | None) -> list[TargetRow]:
    """The rollouts' rows, of the problems in `only` where it is given."""
    rows = load_targets(rollouts)
    if only is None:
        return rows
    rows = [r for r in rows if r.problem_id in only]
    if not rows:
        raise UserError(
            f"none of calibrator {calibrator}'s held-out problems are in {rollouts} any more; "
            "evaluate it on other rollouts"
        )
    return rows


def fitted_calibrators(
    prm: PRM, out: Path, calibrator: str | Path | None, compare: str | Path | None, seed: int
) -> dict[str, Calibrator]:
    """By name in the report: `calibrated` (the given one), and with `compare` every registered
    method fitted on those rollouts (into `out/fits/METHOD`)."""
    folders = {} if calibrator is None else {"calibrated": Path(calibrator)}
    if compare is not None:
        for method in CALIBRATORS:
            folders[method] = out / "fits" / method
            calibrate(compare, prm, method, folders[method], held_out=0.0, seed=seed)
    return {name: load_calibrator(folder, prm) for name, folder in folders.items()}


def metrics_table(data: Prefixes, calibrators: dict[str, Calibrator]) -> tuple[dict, dict[str, np.ndarray]]:
    """Metrics (and Brier by step) of the raw PRM and of each calibrator on `data`, and their medians."""
    predictions = {"uncalibrated": data.score[:, None]}
    levels: dict[str, tuple[float, ...]] = {"uncalibrated": (0.5,)}
    for name, cal in calibrators.items():
        predictions[name] = cal.predict(data)
        levels[name] = cal.levels
    target, steps = data.target, np.array([r.t for r in data.rows])
    resolution = target_resolution(data.rows)
    medians = {name: q[:, median_column(levels[name])] for name, q in predictions.items()}
    table = {
        name: {
            **metrics(q, target, levels[name], resolution),
            "brier_by_step": by_step(brier, medians[name], target, steps, cap=6),
        }
        for name, q in predictions.items()
    }
    return table, medians


def scored_problems(folder: str | Path, info: dict, rollouts: str | Path) -> set[str] | None:
    """The problems to score a calibrator on: all of other rollouts (None), but of the rollouts
    it was fitted on only its held-out ones; the rest would flatter it."""
    data = info.get("data") or {}
    if not data.get("rollouts") or not same_folder(data["rollouts"], rollouts):
        return None
    held = data.get("held_out_problems")
    if not held:
        raise UserError(
            f"calibrator {folder} was fitted on {rollouts} and records no held-out problems to score "
            "there; evaluate it on other rollouts or refit it with `ias calibrate --held-out 0.2`"
        )
    return set(held)


def same_folder(a: str | Path, b: str | Path) -> bool:
    """Whether two spellings name one folder (relative, absolute, with ~ or a trailing slash)."""
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
