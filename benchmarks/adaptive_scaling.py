"""The demo's IAS figures as one JSON line: token share of `bon@N_max`, accuracy gap and frontier ratios per method.

    python benchmarks/adaptive_scaling.py --out runs/bench-ias               # the demo's sizes: 200 problems, N_max 64
    python benchmarks/adaptive_scaling.py --problems 500 --n-max 64 --out runs/bench-ias-500

Stages resume when rerun into the same `--out`. `frontier` per non-fixed method: `saving`,
the tokens of the cheapest fixed N (any selection rule) at least as accurate divided by its
own, and `gain`, its accuracy minus the fixed-N curve's at equal tokens. Targets (issue 13):
`ias-adaptive` at <= 25% of `bon@N_max`'s tokens >= the best fixed N + 2 points;
`ias-adaptive@8` >= `bon@8` + 4 points on no more tokens; `ias-adaptive@B` within 4 points
of `oracle-alloc@B` (B = 4, 8, 16); its confidence ECE <= 0.05.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ias.demo import run_demo
from ias.report import frontier_verdict


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
        "calibrated_minus_uncalibrated": round(
            methods["ias-bon"]["accuracy"] - methods["ias-bon-uncalibrated"]["accuracy"], 4
        ),
        "brier": {m: v["brier"] for m, v in summary["calibration"]["methods"].items()},
        "tuned_on_calib": {k: summary["tuning"][k] for k in ("estimate", "coverage")} if "tuning" in summary else None,
        "best_fixed_accuracy": max(p["accuracy"] for c in summary["frontier"].values() for p in c),
        "frontier": frontier_verdict(summary),
        "adaptive_minus_oracle": {
            b: round(methods[f"ias-adaptive@{b}"]["accuracy"] - methods[f"oracle-alloc@{b}"]["accuracy"], 4)
            for b in (2, 4, 8, 16, 32)
            if f"ias-adaptive@{b}" in methods and f"oracle-alloc@{b}" in methods
        },
        "confidence_ece": summary.get("confidence_ece"),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
