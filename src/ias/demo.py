"""`ias demo`: the whole method on the built-in task and the shipped zoo models, no downloads.

1. Monte-Carlo rollouts of the weak policy on `calib` problems (and a few `test` ones to
   score calibration on), 2. every calibration method fitted and compared, 3. `ias eval` of
   every strategy on `test` problems at N_max, budgeting IAS from the `quantile-head`
   calibrator; `ias-bon-tuned` chooses its estimate and coverage, and `ias-adaptive` its
   confidence map and knobs, on the `calib` problems' own pool. One line says how
   `ias-adaptive` stands against the fixed-N frontier. The beam searches keep up to
   sqrt(N_max) beams of sqrt(N_max) samples (the paper's 8 x 8 at N_max = 64). Each stage
   resumes when rerun into the same `--out`.
"""

from __future__ import annotations

import time
from pathlib import Path

from ias.api import calib_eval, evaluate, rollout
from ias.records import write_json
from ias.report import eval_table, print_calibration, tuning_line, verdict_line
from ias.specs import EvalRun, EvalSettings, PRMSpec, TaskSpec

FULL = {"calib_problems": 150, "calib_test_problems": 60, "problems": 200, "n_max": 64}
QUICK = {"calib_problems": 40, "calib_test_problems": 20, "problems": 60, "n_max": 16}


def run_demo(
    out: Path = Path("ias-demo"),
    quick: bool = False,
    seed: int = 0,
    problems: int | None = None,
    n_max: int | None = None,
) -> dict:
    sizes = {
        **(QUICK if quick else FULL),
        **({"problems": problems} if problems else {}),
        **({"n_max": n_max} if n_max else {}),
    }
    started = time.time()
    print(f"ias demo: policy arith-weak, PRM arith-prm; {sizes['problems']} test problems at N_max = {sizes['n_max']}")
    print("[1/3] Monte-Carlo rollouts (calibration data)")
    for split, limit in (("calib", sizes["calib_problems"]), ("test", sizes["calib_test_problems"])):
        rollout(
            task="arith",
            split=split,
            policy="arith-weak",
            n_traj=4,
            n_mc=8,
            out=out / f"rollouts-{split}",
            limit=limit,
            seed=seed,
        )
    print("[2/3] calibration: every method fitted on calib rollouts, scored on test rollouts")
    calibration = calib_eval(
        out / "rollouts-test", prm="arith-prm", out=out / "calibration", compare=out / "rollouts-calib", seed=seed
    )
    print_calibration(calibration)
    print("[3/3] evaluation: every strategy on one shared pool of samples")
    summary = _evaluate(out, sizes, seed)
    summary["calibration"] = {
        "methods": {
            k: {m: v[m] for m in ("brier", "overestimation", "ece", "coverage")}
            for k, v in calibration["methods"].items()
        }
    }
    summary["demo_wall_s"] = round(time.time() - started, 1)
    write_json(out / "summary.json", summary)
    print(eval_table(summary))
    if summary.get("tuning"):
        print(tuning_line(summary["tuning"]))
    print(verdict_line(summary))
    print(f"report: {out / 'eval' / 'report.md'}  summary: {out / 'summary.json'}  ({summary['demo_wall_s']} s)")
    return summary


def _evaluate(out: Path, sizes: dict, seed: int) -> dict:
    """Step 3: every strategy on one shared pool, ias-adaptive tuned on the calib split's own pool."""
    width = max(1, round(sizes["n_max"] ** 0.5))
    run = EvalRun(
        task=TaskSpec("arith", "test", sizes["problems"]),
        prm=PRMSpec("arith-prm", calibrator=str(out / "calibration" / "fits" / "quantile-head")),
        eval=EvalSettings(
            n_max=sizes["n_max"], tune_split="calib", tune_limit=sizes["calib_problems"], k_max=width, m_max=width
        ),
        out=str(out / "eval"),
        seed=seed,
    )
    return evaluate(run)
