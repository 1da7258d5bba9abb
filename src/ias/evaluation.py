"""`ias eval`: every strategy on one task split, on one shared pool of samples, in one run.

The pool is a resumable N_max-sample Best-of-N run (`pool/`: records with every sample's
answer, correctness, calibrated step scores and quantiles, token log-probabilities, and the
PRM's reading of the question alone). Each whole-sample method is then replayed on it (see
`scaling/adaptive.py`), so all are measured on the same samples; the step-level searches
(`beam`, `ias-beam`) run for real, each into its own resumable folder. Written to `out`:
`summary.json`, `records.jsonl` (per problem: its true success rate, its budget estimates
and every method's outcome), `pareto.png`, `budget.png` and `report.md`.

Wall time of a replayed method is estimated from the pool's measured wall time of the
evaluated problems (each problem's share of its batch, `pool/timing.jsonl`), in proportion to
the tokens it generates (the pool is timed, not each replay); a search's wall time is measured
the same way. Problems written before ias timed them count 0 s, and `summary.json` says so
(`notes`).
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
from ias.scaling.beam import BeamSearch
from ias.scaling.budget import UNREAD
from ias.scaling.bon import BestOfN

STRATEGIES = ("bon", "ias-bon", "ias-bon-median", "ias-bon-tuned", "ias-bon-uncalibrated", "ias-seq", "fleet",
              "beam", "ias-beam", "sc", "weighted", "adaptive-consistency", "esc", "deepconf", "oracle-ias")
SEARCHES = ("beam", "ias-beam")  # run for real (a step-level search cannot be replayed on whole samples)
TUNED = "ias-bon-tuned"  # IAS Best-of-N with the estimate and coverage chosen on a tuning split
TUNE_COVERAGES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99)


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
    executor=None, tune_problems=None, tune_config: dict | None = None, tolerance: float = 0.015,
) -> dict:
    """The pool (resumable), then every strategy replayed on it; returns `summary.json`.

    `executor` (see `ias.executors`) produces the pool elsewhere, e.g. on Ray actors.
    `tune_problems` (other problems than the evaluated ones, e.g. the `calib` split) get a
    pool of their own in `out/tune`, claimed with `tune_config` (the main pool's settings know
    nothing of it), on which `ias-bon-tuned` chooses its estimate and coverage (`tune_budget`)
    before it is measured here.
    """
    from ias.runner import run_dataset

    out = Path(out)
    strategies = check_strategies(strategies)
    if TUNED in strategies and not (tune_problems and tune_config):
        raise UserError(f"strategy '{TUNED}' needs problems to tune on (--tune-split, e.g. calib)")

    def pool(folder: Path, chosen, settings: dict) -> tuple[dict, list[dict]]:
        summary = run_dataset(
            BestOfN(n=budget.n_max, score_question=True, name="pool"), chosen, task, policy, prm,
            dataclasses.replace(params, logprobs=True), seed, folder, settings,
            batch_problems=batch_problems, progress=progress, executor=executor,
        )
        wanted = {p.id for p in chosen}
        return summary, [r for r in read_records(folder / "records.jsonl") if r["id"] in wanted]

    tuning = None
    if TUNED in strategies:
        # By question text, not id: a jsonl file read under two split names gives the same
        # questions different ids, and an arith seed:N split may redraw test questions.
        evaluated = {_question_key(p.question) for p in problems}
        overlap = sorted(p.id for p in tune_problems if _question_key(p.question) in evaluated)
        if overlap:
            raise UserError(f"the tuning problems include {len(overlap)} evaluated questions (e.g. {overlap[0]}); "
                            "tune on another split")
        tuning = {"split": tune_config["split"],
                  **tune_budget(pool(out / "tune" / "pool", tune_problems, tune_config)[1], budget, tolerance)}
        write_json(out / "tune" / "tuning.json", tuning)
    pool_summary, records = pool(out / "pool", problems, config)
    # The raw PRM's reading of each question, for IAS without calibration.
    raw = [x.scores[0] if x.scores else UNREAD for x in plain_prm.score([(r["question"], []) for r in records])]
    outcomes = replay(records, raw, strategies, budget, tuning)
    pool_tokens = pool_summary["usage"]["generated_tokens"] or 1
    pool_wall = pool_summary["wall_s"]
    notes = _untimed_note(out / "pool", pool_summary)
    methods = {name: _method_summary(results, share_of=(pool_wall, pool_tokens)) for name, results in outcomes.items()}
    for name in (s for s in SEARCHES if s in strategies):
        search = BeamSearch(n_init=budget.n_max, k_max=budget.k_max, m_max=budget.m_max, freq=budget.beam_freq,
                            max_rounds=budget.beam_rounds, adaptive=name == "ias-beam", coverage=budget.coverage,
                            n_max=budget.n_max, name=name)
        summary_of = run_dataset(search, problems, task, policy, prm, params, seed, out / name, config,
                                 batch_problems=batch_problems, progress=progress, executor=executor)
        by_id = {r["id"]: r for r in read_records(out / name / "records.jsonl")}
        outcomes[name] = [_search_outcome(by_id[r["id"]]) for r in records]
        methods[name] = _method_summary(outcomes[name], wall_s=summary_of["wall_s"])
        notes += _untimed_note(out / name, summary_of)
    summary = {"methods": methods, "n_problems": len(records), "n_max": budget.n_max,
               "budget": dataclasses.asdict(budget), "pool": {"wall_s": pool_wall, "usage": pool_summary["usage"]},
               "config": config, **({"tuning": tuning} if tuning else {}), **({"notes": notes} if notes else {})}
    _write_records(out / "records.jsonl", records, raw, outcomes)
    write_json(out / "summary.json", summary)
    from ias.report import eval_plots, write_eval_report

    eval_plots(out, summary, records, outcomes, budget)
    write_eval_report(out / "report.md", summary)
    return summary


def replay(
    records: list[dict], raw_t0: list[float], strategies: Sequence[str], budget: Budget, tuning: dict | None = None
) -> dict[str, list[Outcome]]:
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
        results["ias-bon-median"] = _ias_with(records, budget, "median", budget.coverage)
    if "ias-bon-uncalibrated" in strategies:
        results["ias-bon-uncalibrated"] = [adaptive.ias_bon(r, budget, p) for r, p in zip(records, raw_t0)]
    if TUNED in strategies:
        results[TUNED] = _ias_with(records, budget, tuning["estimate"], tuning["coverage"])
    if "fleet" in strategies:
        results["fleet"] = adaptive.fleet(records, budget, total=sum(o.samples for o in ias))
    for name, method in adaptive.PER_PROBLEM.items():
        if name in strategies and name != "ias-bon":
            results[name] = [method(r, budget) for r in records]
    return results


def _ias_with(records: list[dict], budget: Budget, estimate: str, coverage: float) -> list[Outcome]:
    """IAS Best-of-N budgeting from the calibrated `lower` quantile or the `median`, at `coverage`."""
    chosen = dataclasses.replace(budget, coverage=coverage)
    return [adaptive.ias_bon(r, chosen, adaptive.lower_bound(r) if estimate == "lower" else adaptive.median(r))
            for r in records]


def tune_budget(records: list[dict], budget: Budget, tolerance: float = 0.015) -> dict:
    """The cheapest IAS setting (estimate x coverage) whose accuracy on these problems' pool
    stays within `tolerance` of fixed Best-of-N_max there; the most accurate one if none does.

    Tuned on other problems than the evaluated ones, the choice is an honest one.
    """
    reference = sum(adaptive.best_of(r, budget.n_max).correct for r in records) / len(records)
    grid = []
    for estimate in ("lower", "median"):
        for coverage in TUNE_COVERAGES:
            results = _ias_with(records, budget, estimate, coverage)
            grid.append({"estimate": estimate, "coverage": coverage,
                         "accuracy": round(sum(o.correct for o in results) / len(results), 4),
                         "tokens": sum(o.tokens for o in results)})
    good = [g for g in grid if g["accuracy"] >= reference - tolerance]
    best = min(good, key=lambda g: g["tokens"]) if good else max(grid, key=lambda g: (g["accuracy"], -g["tokens"]))
    return {"estimate": best["estimate"], "coverage": best["coverage"], "tolerance": tolerance,
            "n_problems": len(records), f"bon@{budget.n_max}_accuracy": round(reference, 4),
            "bon_tokens": sum(adaptive.best_of(r, budget.n_max).tokens for r in records), "grid": grid}


def _question_key(question: str) -> str:
    """A question as compared for overlap: case and runs of whitespace do not matter."""
    return " ".join(question.split()).casefold()


def _untimed_note(folder: Path, summary: dict) -> list[str]:
    """A note when some problems of a run folder have no wall time (solved before ias timed
    each problem): they count 0 s, so the wall times built on them are too low."""
    untimed = summary["untimed_problems"]
    if not untimed:
        return []
    return [(f"{untimed} of {summary['n_problems']} problems in {folder} were solved before ias timed each "
             "problem: their wall time counts as 0 s")]


def _search_outcome(record: dict) -> Outcome:
    """A live search's result and what it spent (samples: step continuations drawn)."""
    usage = record["usage"]
    return Outcome(record["answer"], bool(record["correct"]), usage["samples"], usage["generated_tokens"],
                   usage["prm_tokens"])


def _method_summary(results: list[Outcome], wall_s: float | None = None,
                    share_of: tuple[float, int] | None = None) -> dict:
    """Accuracy, its interval and spend; wall time measured (`wall_s`) or the pool's
    (`share_of` = pool wall time, pool tokens) in proportion to the tokens generated."""
    correct = [float(o.correct) for o in results]
    tokens = sum(o.tokens for o in results)
    if wall_s is None:
        pool_wall, pool_tokens = share_of
        wall_s = pool_wall * tokens / pool_tokens
    return {
        "accuracy": round(sum(correct) / len(correct), 4),
        "ci95": bootstrap_ci(correct),
        "tokens": tokens,
        "samples": sum(o.samples for o in results),
        "prm_tokens": sum(o.prm_tokens for o in results),
        "wall_s": round(wall_s, 2),
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
