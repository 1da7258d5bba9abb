"""`ias eval`: every strategy on one task split, on one shared pool of samples, in one run.

The pool is a resumable N_max-sample Best-of-N run (`pool/`: records with every sample's
answer, correctness, calibrated step scores and quantiles, token log-probabilities, and the
PRM's reading of the question alone). Each method is then replayed on it (see
`scaling/adaptive.py`), so all are measured on the same samples. Written to `out`:
`summary.json`, `records.jsonl` (per problem: its true success rate, its budget estimates
and every method's outcome), `pareto.png`, `budget.png` and `report.md`.

Wall time per method is estimated from the pool's measured wall time, in proportion to the
tokens the method generates (one pool run is timed, not each replay).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

from ias.errors import UserError
from ias.metrics import bootstrap_ci
from ias.records import RecordWriter, read_records, write_json
from ias.scaling import adaptive
from ias.scaling.adaptive import Budget, Outcome
from ias.scaling.bon import BestOfN

STRATEGIES = ("bon", "ias-bon", "ias-bon-median", "ias-bon-uncalibrated", "ias-seq", "fleet", "sc", "weighted",
              "adaptive-consistency", "esc", "deepconf", "oracle-ias")


def check_strategies(names: Sequence[str]) -> list[str]:
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown:
        raise UserError(f"unknown strategy '{unknown[0]}'; known: {', '.join(STRATEGIES)}")
    return list(dict.fromkeys(names))


def fixed_sizes(n_max: int) -> list[int]:
    """1, 2, 4, ... up to n_max (n_max itself included): the fixed Best-of-N curve."""
    sizes, n = [], 1
    while n < n_max:
        sizes.append(n)
        n *= 2
    return [*sizes, n_max]


def run_eval(
    problems, task, policy, prm, plain_prm, params, seed: int, out: Path, config: dict,
    strategies: Sequence[str], budget: Budget, batch_problems: int = 16, progress: bool = True,
) -> dict:
    """The pool (resumable), then every strategy replayed on it; returns `summary.json`."""
    from ias.runner import run_dataset

    out = Path(out)
    strategies = check_strategies(strategies)
    pool_summary = run_dataset(
        BestOfN(n=budget.n_max, score_question=True, name="pool"), problems, task, policy, prm,
        dataclasses.replace(params, logprobs=True), seed, out / "pool", config,
        batch_problems=batch_problems, progress=progress,
    )
    wanted = {p.id for p in problems}
    records = [r for r in read_records(out / "pool" / "records.jsonl") if r["id"] in wanted]
    # The raw PRM's reading of each question, for IAS without calibration (an unreadable one
    # budgets as if easy: that is what trusting an absent estimate would do).
    raw = [x.scores[0] if x.scores else 1.0 for x in plain_prm.score([(r["question"], []) for r in records])]
    outcomes = replay(records, raw, strategies, budget)
    pool_tokens = pool_summary["usage"]["generated_tokens"] or 1
    pool_wall = pool_summary["wall_s_total"]
    methods = {name: _method_summary(results, pool_wall, pool_tokens) for name, results in outcomes.items()}
    summary = {"methods": methods, "n_problems": len(records), "n_max": budget.n_max,
               "budget": dataclasses.asdict(budget), "pool": {"wall_s": pool_wall, "usage": pool_summary["usage"]},
               "config": config}
    _write_records(out / "records.jsonl", records, raw, outcomes)
    write_json(out / "summary.json", summary)
    from ias.report import eval_plots, write_eval_report

    eval_plots(out, summary, records, outcomes, budget)
    write_eval_report(out / "report.md", summary)
    return summary


def replay(records: list[dict], raw_t0: list[float], strategies: Sequence[str], budget: Budget) -> dict[str, list[Outcome]]:
    """Every asked-for method's outcome on every problem, replayed on the pool."""
    results: dict[str, list[Outcome]] = {}
    if "bon" in strategies:
        for n in fixed_sizes(budget.n_max):
            results[f"bon@{n}"] = [adaptive.best_of(r, n) for r in records]
    if "sc" in strategies:
        results[f"sc@{budget.n_max}"] = [adaptive.majority_of(r, budget.n_max) for r in records]
    if "weighted" in strategies:
        results[f"weighted@{budget.n_max}"] = [adaptive.weighted_of(r, budget.n_max) for r in records]
    ias = [adaptive.ias_bon(r, budget) for r in records]
    if "ias-bon" in strategies:
        results["ias-bon"] = ias
    if "ias-bon-median" in strategies:  # budget from the calibrated median, not the lowest quantile
        results["ias-bon-median"] = [adaptive.ias_bon(r, budget, r["question_reading"]["score"]) for r in records]
    if "ias-bon-uncalibrated" in strategies:
        results["ias-bon-uncalibrated"] = [adaptive.ias_bon(r, budget, p) for r, p in zip(records, raw_t0)]
    if "fleet" in strategies:
        results["fleet"] = adaptive.fleet(records, budget, total=sum(o.samples for o in ias))
    for name, method in adaptive.PER_PROBLEM.items():
        if name in strategies and name != "ias-bon":
            results[name] = [method(r, budget) for r in records]
    return results


def _method_summary(results: list[Outcome], pool_wall: float, pool_tokens: int) -> dict:
    correct = [float(o.correct) for o in results]
    tokens = sum(o.tokens for o in results)
    return {
        "accuracy": round(sum(correct) / len(correct), 4),
        "ci95": bootstrap_ci(correct),
        "tokens": tokens,
        "samples": sum(o.samples for o in results),
        "prm_tokens": sum(o.prm_tokens for o in results),
        "wall_s": round(pool_wall * tokens / pool_tokens, 2),
    }


def _write_records(path: Path, records: list[dict], raw_t0: list[float], outcomes: dict[str, list[Outcome]]) -> None:
    """Per problem: its true success rate in the pool, its budget estimates, every method's outcome."""
    path.unlink(missing_ok=True)
    with RecordWriter(path) as writer:
        writer.write([
            {
                "id": r["id"],
                "p_true": round(sum(s["correct"] for s in r["samples"]) / len(r["samples"]), 4),
                "p_lower": round(adaptive.lower_bound(r), 4),
                "p_uncalibrated": round(raw, 4),
                "methods": {name: results[k].to_dict() for name, results in outcomes.items()},
            }
            for k, (r, raw) in enumerate(zip(records, raw_t0))
        ])
