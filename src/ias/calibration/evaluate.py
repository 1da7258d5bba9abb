"""`ias calib-eval`: how well a PRM (raw, or calibrated) predicts a policy's success on rollouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ias.calibration.calibrate import METHODS, calibrate, calibrated_prm, load_calibrator, metrics, read_calibration_for
from ias.calibration.metrics import brier, by_step, reliability_plot
from ias.calibration.quantile_head import median_column, prm_readings
from ias.calibration.quantile_lora import quantiles_of
from ias.calibration.store import load_targets, target_resolution
from ias.errors import UserError
from ias.prm.base import PRM
from ias.records import write_json


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
        raise UserError("--compare FIT_ROLLOUTS must be another rollout folder than --rollouts: every method "
                        "would be scored on the rows it was fitted on")
    only = (
        scored_problems(calibrator, read_calibration_for(prm, calibrator), rollouts) if calibrator is not None else None
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    all_rows = load_targets(rollouts)
    if only is not None:
        all_rows = [r for r in all_rows if r.problem_id in only]
        if not all_rows:
            raise UserError(f"none of calibrator {calibrator}'s held-out problems are in {rollouts} any more; "
                            "evaluate it on other rollouts")
    score, hidden, _, kept = prm_readings(prm, all_rows)
    rows = [all_rows[k] for k in kept]
    target = np.array([r.p for r in rows], dtype=np.float32)
    steps = np.array([r.t for r in rows])
    predictions = {"uncalibrated": score[:, None]}
    levels = {"uncalibrated": (0.5,)}
    folders = {}
    if calibrator is not None:
        folders["calibrated"] = Path(calibrator)
    if compare is not None:
        for method in METHODS:
            folders[method] = out / "fits" / method
            calibrate(compare, prm, method, folders[method], held_out=0.0, seed=seed)
    for name, folder in folders.items():
        if read_calibration_for(prm, folder)["method"] == "quantile-lora":
            adapted = calibrated_prm(prm, folder)
            predictions[name] = quantiles_of(adapted, rows)
            levels[name] = adapted.quantile_reader.levels
        else:
            cal = load_calibrator(folder)
            predictions[name] = cal.predict(score, hidden)
            levels[name] = cal.levels
    medians = {name: q[:, median_column(levels[name])] for name, q in predictions.items()}
    table = {
        name: {
            **metrics(q, target, levels[name], target_resolution(rows)),
            "brier_by_step": by_step(brier, medians[name], target, steps, cap=6),
        }
        for name, q in predictions.items()
    }
    report = {"rollouts": str(rollouts), "prm": getattr(prm, "name", None), "rows": len(rows),
              "unreadable_rows": len(all_rows) - len(rows), "problems": len({r.problem_id for r in rows}),
              "held_out_only": only is not None, "methods": table}
    write_json(out / "metrics.json", report)
    reliability_plot(out / "reliability.png", medians, target, title="Reliability on held-out rollouts")
    if compare is not None:
        compared = ("brier", "overestimation", "ece", "coverage", "coverage_with_ties")
        write_json(out / "compare.json", {"methods": {k: {m: v[m] for m in compared}
                                                      for k, v in table.items() if k != "calibrated"}})
    return report


def scored_problems(folder: str | Path, info: dict, rollouts: str | Path) -> set[str] | None:
    """The problems to score a calibrator on: all of other rollouts (None), but of the rollouts
    it was fitted on only its held-out ones; the rest would flatter it."""
    data = info.get("data") or {}
    if not data.get("rollouts") or not same_folder(data["rollouts"], rollouts):
        return None
    held = data.get("held_out_problems")
    if not held:
        raise UserError(f"calibrator {folder} was fitted on {rollouts} and records no held-out problems to score "
                        "there; evaluate it on other rollouts or refit it with `ias calibrate --held-out 0.2`")
    return set(held)


def same_folder(a: str | Path, b: str | Path) -> bool:
    """Whether two spellings name one folder (relative, absolute, with ~ or a trailing slash)."""
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
