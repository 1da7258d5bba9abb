"""`ias calib-eval`: how well a PRM (raw, or calibrated) predicts a policy's success on rollouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ias.calibration.calibrate import METHODS, calibrate, calibrated_prm, load_calibrator, metrics, read_calibration
from ias.calibration.metrics import brier, by_step, reliability_plot
from ias.calibration.quantile_head import median_column, prm_readings
from ias.calibration.quantile_lora import quantiles_of
from ias.calibration.store import load_targets, target_resolution
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

    Writes `metrics.json`, `reliability.png` and, with `compare`, `compare.json`.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    all_rows = load_targets(rollouts)
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
        if read_calibration(folder)["method"] == "quantile-lora":
            adapted = calibrated_prm(prm, folder)
            predictions[name] = quantiles_of(adapted, rows)
            levels[name] = adapted.quantile_reader.levels
        else:
            cal = load_calibrator(folder)
            predictions[name] = cal.predict(score, hidden)
            levels[name] = cal.levels
    medians = {name: q[:, median_column(levels[name])] for name, q in predictions.items()}
    table = {
        name: {**metrics(q, target, levels[name], target_resolution(rows)), "brier_by_step": by_step(brier, medians[name], target, steps, cap=6)}
        for name, q in predictions.items()
    }
    report = {"rollouts": str(rollouts), "prm": getattr(prm, "name", None), "rows": len(rows),
              "unreadable_rows": len(all_rows) - len(rows), "methods": table}
    write_json(out / "metrics.json", report)
    reliability_plot(out / "reliability.png", medians, target, title="Reliability on held-out rollouts")
    if compare is not None:
        write_json(out / "compare.json", {"methods": {k: {m: v[m] for m in ("brier", "overestimation", "ece", "coverage", "coverage_with_ties")}
                                                      for k, v in table.items() if k != "calibrated"}})
    return report

