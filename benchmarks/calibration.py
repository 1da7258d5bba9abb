"""Calibration of the zoo PRM for the weak and the strong policy, measured in one run.

For each policy: rollouts on `calib` (to fit) and on `test` (to evaluate), then every
calibration method fitted on the first and scored on the second. Prints one JSON line:

    python benchmarks/calibration.py --problems 400 --n-traj 4 --n-mc 8 --out runs/bench-cal

Rollout folders are reused (and resumed) when they exist, so a second run only refits.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import ias
from ias.calibration.calibrate import METHODS, QUANTILE_METHODS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=400, help="problems per split")
    parser.add_argument("--n-traj", type=int, default=4)
    parser.add_argument("--n-mc", type=int, default=8)
    parser.add_argument("--prm", default="arith-prm")
    parser.add_argument("--policies", default="arith-weak,arith-strong")
    parser.add_argument("--out", default="runs/bench-calibration")
    args = parser.parse_args()
    out = Path(args.out)
    figures: dict = {"problems": args.problems, "n_traj": args.n_traj, "n_mc": args.n_mc, "prm": args.prm}
    for policy in args.policies.split(","):
        folders = {}
        started = time.time()
        for split in ("calib", "test"):
            folders[split] = out / f"{policy}-{split}"
            ias.rollout(
                task="arith",
                split=split,
                policy=policy,
                n_traj=args.n_traj,
                n_mc=args.n_mc,
                out=folders[split],
                limit=args.problems,
                progress=False,
            )
        rollout_s = time.time() - started
        report = ias.calib_eval(folders["test"], prm=args.prm, out=out / f"{policy}-eval", compare=folders["calib"])
        fit_s = {
            m: json.loads((out / f"{policy}-eval" / "fits" / m / "calibration.json").read_text())["fit_seconds"]
            for m in METHODS
        }
        methods = report["methods"]
        figures[policy] = {
            "rows": report["rows"],
            "rollout_s": round(rollout_s, 1),
            "fit_s": fit_s,
            "brier": {m: v["brier"] for m, v in methods.items()},
            "overestimation": {m: v["overestimation"] for m, v in methods.items()},
            "ece": {m: v["ece"] for m, v in methods.items()},
            "coverage": {m: methods[m]["coverage"] for m in QUANTILE_METHODS},
            "coverage_with_ties": {m: methods[m]["coverage_with_ties"] for m in QUANTILE_METHODS},
            "brier_ratio": {
                m: round(methods[m]["brier"] / methods["uncalibrated"]["brier"], 3) for m in QUANTILE_METHODS
            },
        }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
