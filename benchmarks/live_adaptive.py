"""Adaptive compute live: `ias solve --strategy ias-adaptive` against fixed Best-of-N at equal
accuracy, in tokens and in wall time. Prints one JSON line.

    python benchmarks/live_adaptive.py --demo runs/bench-ias [--problems 200]

`--demo` is a folder of `ias demo` (or `benchmarks/adaptive_scaling.py`): its quantile-head
calibrator and the tuning of `ias-adaptive` on the calib split's pool (`eval/tune/tuning.json`);
without them there, the quick demo is run into it first. Both methods solve the same test
problems live, every question in one batch (`--batch-problems`), so a wave of ias-adaptive is
one policy call over every question still sampling. Fixed N runs at 1, 2, 4, ... until its
accuracy reaches ias-adaptive's (the equal-accuracy baseline; if none does, the largest N).

Figures: accuracy, generated tokens and wall time of each; `token_saving` = 1 - tokens of
ias-adaptive / tokens of the baseline, `wall_saving` likewise, and their ratio (issue 14's
target: wall saving >= 80% of the token saving, i.e. waves do not serialise the work).

`--budget B` runs `ias-adaptive@B` instead (the tuning file's setting for a mean budget of B
samples per question) against fixed Best-of-N at N = B, the equal-compute comparison `ias eval`
reports: `accuracy_gain` and `token_ratio` (its tokens over bon@B's; <= 1 is the claim).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import ias
from ias.demo import run_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", default="runs/bench-ias", help="an `ias demo` folder (run quick if empty)")
    parser.add_argument("--problems", type=int, default=200)
    parser.add_argument("--n-max", type=int, default=64)
    parser.add_argument("--batch-problems", type=int, default=1024)
    parser.add_argument("--out", default="runs/bench-live")
    parser.add_argument("--budget", type=int, help="run ias-adaptive@B against bon@B instead")
    args = parser.parse_args()
    demo, out = Path(args.demo), Path(args.out)
    if out.exists():  # a resumed solve does no work: its wall time would say nothing
        raise SystemExit(f"{out} exists; wall times are measured on fresh runs: give another --out")
    calibrator = demo / "calibration" / "fits" / "quantile-head"
    tuning = demo / "eval" / "tune" / "tuning.json"
    if not (calibrator.is_dir() and tuning.is_file()):
        run_demo(demo, quick=True)
    common = dict(
        task="arith",
        split="test",
        policy="arith-weak",
        prm="arith-prm",
        calibrator=calibrator,
        limit=args.problems,
        batch_problems=args.batch_problems,
        progress=False,
    )
    strategy = "ias-adaptive" + (f"@{args.budget}" if args.budget else "")
    adaptive = ias.solve(strategy=strategy, tuning=tuning, settings={"n_max": args.n_max}, out=out / strategy, **common)
    if args.budget:
        fixed = ias.solve(strategy="bon", n=args.budget, out=out / f"bon-{args.budget}", **common)
        print(json.dumps(_equal_compute(args, adaptive, fixed)))
        return
    fixed, n = None, 1
    while True:
        fixed = ias.solve(strategy="bon", n=n, out=out / f"bon-{n}", **common)
        if fixed["accuracy"] >= adaptive["accuracy"] or n >= args.n_max:
            break
        n = min(2 * n, args.n_max)

    a, b = figures(adaptive), figures(fixed)
    token_saving = 1 - a["tokens"] / b["tokens"]
    wall_saving = 1 - a["wall_s"] / b["wall_s"]
    print(
        json.dumps(
            {
                "problems": args.problems,
                "n_max": args.n_max,
                "ias_adaptive": a,
                "baseline": {"n": n, **b},
                "baseline_reaches_accuracy": fixed["accuracy"] >= adaptive["accuracy"],
                "token_saving": round(token_saving, 4),
                "wall_saving": round(wall_saving, 4),
                "wall_over_token_saving": round(wall_saving / token_saving, 3) if token_saving > 0 else None,
            }
        )
    )


def figures(summary: dict) -> dict:
    return {
        "accuracy": summary["accuracy"],
        "tokens": summary["usage"]["generated_tokens"],
        "samples": summary["usage"]["samples"],
        "wall_s": summary["wall_s_this_run"],
    }


def _equal_compute(args: argparse.Namespace, adaptive: dict, fixed: dict) -> dict:
    """ias-adaptive@B against bon@B: the accuracy gained and the tokens spent, relative."""
    a, b = figures(adaptive), figures(fixed)
    return {
        "problems": args.problems,
        "n_max": args.n_max,
        f"ias_adaptive@{args.budget}": a,
        "baseline": {"n": args.budget, **b},
        "accuracy_gain": round(a["accuracy"] - b["accuracy"], 4),
        "token_ratio": round(a["tokens"] / b["tokens"], 4),
        "wall_ratio": round(a["wall_s"] / b["wall_s"], 4),
    }


if __name__ == "__main__":
    main()
