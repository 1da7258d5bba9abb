"""The demo's IAS figures as one JSON line: token share of `bon@N_max` and accuracy gap per method.

    python benchmarks/adaptive_scaling.py --out runs/bench-ias               # the demo's sizes: 200 problems, N_max 64
    python benchmarks/adaptive_scaling.py --problems 500 --n-max 64 --out runs/bench-ias-500

Stages resume when rerun into the same `--out`. Targets (issue 4): calibrated IAS Best-of-N
(`ias-bon-tuned`: its estimate and coverage chosen on the calib problems) at <= 50% of
`bon@N_max`'s tokens within 1.5 points of its accuracy; `ias-bon-uncalibrated` >= 3 points
below calibrated `ias-bon`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ias.demo import run_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=200)
    parser.add_argument("--n-max", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/bench-ias")
    args = parser.parse_args()
    summary = run_demo(Path(args.out), seed=args.seed, problems=args.problems, n_max=args.n_max)
    methods = summary["methods"]
    reference = methods[f"bon@{args.n_max}"]
    figures = {
        "n_problems": summary["n_problems"],
        "n_max": args.n_max,
        "demo_wall_s": summary["demo_wall_s"],
        "bon_accuracy": reference["accuracy"],
        "token_share": {m: round(v["tokens"] / reference["tokens"], 3) for m, v in methods.items()},
        "accuracy_minus_bon": {m: round(v["accuracy"] - reference["accuracy"], 4) for m, v in methods.items()},
        "calibrated_minus_uncalibrated": round(methods["ias-bon"]["accuracy"]
                                               - methods["ias-bon-uncalibrated"]["accuracy"], 4),
        "brier": {m: v["brier"] for m, v in summary["calibration"]["methods"].items()},
        "tuned_on_calib": {k: summary["tuning"][k] for k in ("estimate", "coverage")} if "tuning" in summary else None,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
