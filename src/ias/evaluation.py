"""`ias eval`: every strategy on one task split, on one shared pool of samples, in one run.

The pool is a resumable N_max-sample Best-of-N run (`pool/`: records with every sample's
answer, correctness, calibrated step scores and quantiles, token log-probabilities, and the
PRM's reading of the question alone). Every whole-sample method of `ias.methods` then runs on
it through the same engine that runs it live (`PoolSource` serves the pool's samples), in
several seeded orderings of each question's samples, so all are measured on the same
samples and a live run cannot differ from its evaluation; the step-level searches (`beam`,
`ias-beam`, `particle-filtering`) run live, each into its own resumable folder. Written to `out`:
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ias.calibration.metrics import ece
from ias.errors import UserError
from ias.methods import configure, method_class
from ias.methods.base import Question
from ias.methods.engine import Answer, run_method
from ias.methods.ias_adaptive import ConfidenceMap
from ias.methods.sources import PoolSource
from ias.methods.strategy import MethodStrategy
from ias.metrics import bootstrap_ci
from ias.policy.base import SamplingParams
from ias.records import RecordWriter, read_records, write_json
from ias.scaling import adaptive
from ias.scaling.adaptive import ORDERINGS, Outcome, expected
from ias.scaling.bon import BestOfN
from ias.scaling.budget import UNREAD, oracle_allocation
from ias.scaling.pool import PoolProblem, ProblemOutcomes
from ias.scaling.select import SELECTIONS, aggregate
from ias.specs import EvalRun, EvalSettings, record_config
from ias.types import Problem, split_steps

STRATEGIES = (
    "bon",
    "ias-bon",
    "ias-bon-median",
    "ias-bon-tuned",
    "ias-bon-uncalibrated",
    "ias-seq",
    "fleet",
    "ias-adaptive",
    "ias-adaptive-uncalibrated",
    "oracle-alloc",
    "beam",
    "ias-beam",
    "particle-filtering",
    "sc",
    "weighted",
    "adaptive-consistency",
    "esc",
    "deepconf",
    "oracle-ias",
)
#: Run for real, each into its own resumable folder: a step-level search cannot be replayed on whole samples.
SEARCHES = ("beam", "ias-beam", "particle-filtering")
TUNED = "ias-bon-tuned"  # IAS Best-of-N with the estimate and coverage chosen on a tuning split
TUNE_COVERAGES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99)
#: Each adaptive method's main knob, swept on the evaluated problems for pareto.png's lines
#: (never used to choose a setting): method -> (its setting, values).
SWEEPS = {
    "ias-bon": ("coverage", TUNE_COVERAGES),
    "ias-seq": ("coverage", TUNE_COVERAGES),
    "fleet": ("coverage", TUNE_COVERAGES),
    "adaptive-consistency": ("threshold", (0.8, 0.9, 0.95, 0.99)),
    "esc": ("window", (2, 3, 5, 8)),
}
ADAPTIVE = ("ias-adaptive", "ias-adaptive-uncalibrated")  # tuned on a tuning split's pool when there is one


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


@dataclass(frozen=True)
class EvalParts:
    """The loaded parts an eval runs on: the task, the policy, the (calibrated) PRM that scores
    the pool, the raw PRM that reads the questions, the sampling settings, and an executor that
    produces the pool elsewhere (Ray; then policy and scoring PRM are None)."""

    task: Any
    policy: Any
    prm: Any
    plain_prm: Any
    params: SamplingParams
    executor: Any = None


def run_eval(
    run: EvalRun, parts: EvalParts, problems: Sequence[Problem], tune_problems: Sequence[Problem] | None = None
) -> dict:
    """The pool (resumable), then every strategy run on it in `orderings` orderings of each
    question's samples (1: the pool as drawn, the run `ias solve` makes); returns `summary.json`.

    `tune_problems` (other problems than the evaluated ones, e.g. the `calib` split) get a
    pool of their own in `out/tune`, claimed with the tuning split's settings (the main pool's
    know nothing of it), on which `ias-bon-tuned` chooses its estimate and coverage
    (`tune_budget`) and `ias-adaptive` its settings before they are measured here.
    """
    ev = _Eval(run, parts)
    strategies = check_strategies(run.eval.strategies or [s for s in STRATEGIES if s != TUNED or tune_problems])
    if TUNED in strategies and not tune_problems:
        raise UserError(f"strategy '{TUNED}' needs problems to tune on (--tune-split, e.g. calib)")
    tuning = ev.tune(problems, tune_problems, strategies) if tune_problems else None
    pool_summary, records = ev.pool(ev.out / "pool", problems, ev.config)
    # The raw PRM's reading of each question (and, for the uncalibrated twins, of each sample).
    plain = parts.plain_prm.score([(r.question, []) for r in records])
    records = [r.with_raw_question(x.scores[0] if x.scores and not x.skipped else None) for r, x in zip(records, plain)]
    raw = [UNREAD if x is None else x for x in (r.reading().raw_score for r in records)]
    if any(VARIANTS.get(name, ("", {}))[1].get("calibrated") is False for name in strategies):
        records = _read_raw(parts.plain_prm, records)
    by_ordering = replay(records, strategies, ev.budget, tuning, run.seed, run.eval.orderings, parts.task.extract)
    # Names with a colon are the frontier's and the sweeps' points, summarised on their own.
    outcomes = {name: [expected(runs) for runs in results] for name, results in by_ordering.items() if ":" not in name}
    share_of = (pool_summary["wall_s"], pool_summary["usage"]["generated_tokens"] or 1)
    methods = {name: _method_summary(results, share_of=share_of) for name, results in outcomes.items()}
    notes = _untimed_note(ev.out / "pool", pool_summary)
    if any(a in strategies for a in ADAPTIVE) and not (tuning and "adaptive" in tuning):
        notes.append(
            "no tuning split: ias-adaptive ran with its default settings and its confidence is the chosen "
            "sample's calibrated score (no map); pass --tune-split for ias-adaptive@B and a fitted map"
        )
    search_confidence = _confidence_map((tuning or {}).get("adaptive"))  # the same map as the replayed methods'
    for name in (s for s in SEARCHES if s in strategies):
        outcomes[name], methods[name], search_notes = ev.search(name, problems, records, search_confidence)
        by_ordering[name] = [[o] for o in outcomes[name]]
        notes += search_notes
    summary = _eval_summary(ev, len(records), by_ordering, methods, pool_summary, tuning, notes)
    _write_records(ev.out / "records.jsonl", records, raw, outcomes)
    write_json(ev.out / "summary.json", summary)
    from ias.report import eval_plots, write_eval_report

    eval_plots(ev.out, summary, records, outcomes, ev.budget)
    write_eval_report(ev.out / "report.md", summary)
    return summary


class _Eval:
    """One eval's settings and parts, and the runs it makes on them: the pools and the searches."""

    def __init__(self, run: EvalRun, parts: EvalParts):
        self.run, self.parts, self.out = run, parts, Path(run.out)
        self.budget = Budget.of(run.eval)
        self.config = record_config(run)

    def pool(self, folder: Path, chosen: Sequence[Problem], config: dict) -> tuple[dict, list[PoolProblem]]:
        """The N_max-sample pool of `chosen` in `folder` (resumable), and its records."""
        from ias.runner import run_dataset

        parts = self.parts
        summary = run_dataset(
            BestOfN(n=self.budget.n_max, score_question=True, name="pool"),
            chosen,
            parts.task,
            parts.policy,
            parts.prm,
            dataclasses.replace(parts.params, logprobs=True),
            self.run.seed,
            folder,
            config,
            batch_problems=self.run.batch_problems,
            progress=self.run.progress,
            executor=parts.executor,
        )
        wanted = {p.id for p in chosen}
        return summary, [PoolProblem.from_json(r) for r in read_records(folder / "records.jsonl") if r["id"] in wanted]

    def tune(
        self, problems: Sequence[Problem], tune_problems: Sequence[Problem], strategies: Sequence[str]
    ) -> dict | None:
        """The tuning split's own pool, and the settings chosen on it (`tune/tuning.json`)."""
        if not (TUNED in strategies or any(a in strategies for a in ADAPTIVE)):
            return None
        # By question text, not id: a jsonl file read under two split names gives the same
        # questions different ids, and an arith seed:N split may redraw test questions.
        evaluated = {_question_key(p.question) for p in problems}
        overlap = sorted(p.id for p in tune_problems if _question_key(p.question) in evaluated)
        if overlap:
            raise UserError(
                f"the tuning problems include {len(overlap)} evaluated questions (e.g. {overlap[0]}); "
                "tune on another split"
            )
        # The tuning split is no setting of the main pool (its records do not depend on it): its own pool's.
        split, limit, tolerance = self.run.eval.tune_split, self.run.eval.tune_limit, self.run.eval.tolerance
        records = self.pool(self.out / "tune" / "pool", tune_problems, {**self.config, "split": split, "limit": limit})[
            1
        ]
        tuning = {
            "split": split,
            **tune_budget(records, self.budget, tolerance),
            "adaptive": tune_adaptive(records, self.budget, tolerance, self.run.seed),
        }
        write_json(self.out / "tune" / "tuning.json", tuning)
        return tuning

    def search(
        self, name: str, problems: Sequence[Problem], records: Sequence[PoolProblem], confidence: ConfidenceMap
    ) -> tuple[list[Outcome], dict, list[str]]:
        """A step-level search run live into its own resumable folder: its outcomes (in the
        pool's problem order), its summary and its notes."""
        from ias.runner import run_dataset

        parts, run = self.parts, self.run
        summary = run_dataset(
            MethodStrategy(_method(name, self.budget)),
            problems,
            parts.task,
            parts.policy,
            parts.prm,
            parts.params,
            run.seed,
            self.out / name,
            self.config,
            batch_problems=run.batch_problems,
            progress=run.progress,
            executor=parts.executor,
        )
        by_id = {r["id"]: r for r in read_records(self.out / name / "records.jsonl")}
        outcomes = [_mapped(_search_outcome(by_id[r.id]), confidence) for r in records]
        method = {
            **_method_summary(outcomes, wall_s=summary["wall_s"]),
            "grade_timeouts": summary.get("grade_timeouts", 0),
        }
        return outcomes, method, _untimed_note(self.out / name, summary)


def _eval_summary(
    ev: _Eval,
    n_problems: int,
    by_ordering: dict[str, list[list[Outcome]]],
    methods: dict,
    pool_summary: dict,
    tuning: dict | None,
    notes: list[str],
) -> dict:
    """`summary.json` of an eval."""
    n_max = ev.budget.n_max
    return {
        "methods": methods,
        "n_problems": n_problems,
        "n_max": n_max,
        "orderings": ev.run.eval.orderings,
        "frontier": frontier(by_ordering, n_max),
        **({"sweeps": _sweeps(by_ordering)} if any(k.startswith("sweep:") for k in by_ordering) else {}),
        **({"confidence_ece": confidence_ece(by_ordering)} if "ias-adaptive" in by_ordering else {}),
        "budget": dataclasses.asdict(ev.budget),
        # Samples whose grading timed out (counted wrong): the pool's and each live search's.
        "grade_timeouts": pool_summary.get("grade_timeouts", 0)
        + sum(methods[name].get("grade_timeouts", 0) for name in SEARCHES if name in methods),
        "pool": {
            "wall_s": pool_summary["wall_s"],
            "usage": pool_summary["usage"],
            "grade_timeouts": pool_summary.get("grade_timeouts", 0),
        },
        "config": ev.config,
        **({"tuning": tuning} if tuning else {}),
        **({"notes": notes} if notes else {}),
    }


@dataclass(frozen=True)
class Budget:
    """The run's shared knobs, given to every method that has a setting of that name
    (`ias.methods.configure`): the IAS coverage, the sample range, the beam searches' widths."""

    coverage: float = 0.99
    n_min: int = 1
    n_max: int = 64
    k_max: int = 8  # beam search: most beams kept
    m_max: int = 8  # beam search: most samples per kept beam
    beam_freq: int = 1  # beam search: steps between PRM readings
    beam_rounds: int = 16  # beam search: rounds before the beams are continued to the end

    @classmethod
    def of(cls, settings: EvalSettings) -> Budget:
        """The knobs of an eval's settings (declared there, `ias.specs.EvalSettings`)."""
        return cls(
            coverage=settings.coverage,
            n_max=settings.n_max,
            k_max=settings.k_max,
            m_max=settings.m_max,
            beam_freq=settings.beam_freq,
            beam_rounds=settings.beam_rounds,
        )

    def shared(self) -> dict:
        """The knobs under the methods' setting names."""
        return {
            "coverage": self.coverage,
            "n_min": self.n_min,
            "n_max": self.n_max,
            "n_init": self.n_max,
            "k_max": self.k_max,
            "m_max": self.m_max,
            "freq": self.beam_freq,
            "max_rounds": self.beam_rounds,
        }


#: `ias eval`'s names that are a registered method with some settings fixed (the rest as the
#: run's `Budget` and the method's defaults say).
VARIANTS: dict[str, tuple[str, dict]] = {
    "ias-bon-median": ("ias-bon", {"estimate": "median"}),
    "ias-bon-uncalibrated": ("ias-bon", {"calibrated": False}),
    "ias-adaptive-uncalibrated": ("ias-adaptive", {"calibrated": False}),
}


def _method(name: str, budget: Budget, **settings):
    """Eval's strategy `name` (a registered method or a `VARIANTS` entry) with `settings`."""
    base, fixed = VARIANTS.get(name, (name, {}))
    if base == "deepconf":  # the paper's 16 warm-up traces of 64 or more; a quarter of a smaller pool
        fixed = {**fixed, "warmup": min(method_class("deepconf").warmup, max(1, budget.n_max // 4))}
    return configure(base, {**budget.shared(), **fixed, **settings})


def _planned(strategies: Sequence[str], budget: Budget, tuning: dict | None) -> dict[str, object]:
    """Every method to run on the pool, by the name its figures are reported under. Names
    with a colon are the frontier's points (`frontier:best@8`) and the sweeps of a method's
    main knob (`sweep:esc:window=3`)."""
    plan: dict[str, object] = {}
    for n in fixed_sizes(budget.n_max):
        for how in SELECTIONS:
            plan[f"frontier:{how}@{n}"] = _method("bon", budget, n=n, selection=how)
    if "bon" in strategies:
        plan.update({f"bon@{n}": plan[f"frontier:best@{n}"] for n in fixed_sizes(budget.n_max)})
    if "sc" in strategies:
        plan[f"sc@{budget.n_max}"] = plan[f"frontier:majority@{budget.n_max}"]
    if "weighted" in strategies:
        plan[f"weighted@{budget.n_max}"] = plan[f"frontier:weighted@{budget.n_max}"]
    for name in (
        "ias-bon",
        "ias-bon-median",
        "ias-bon-uncalibrated",
        "ias-seq",
        "fleet",
        "adaptive-consistency",
        "esc",
        "deepconf",
    ):
        if name in strategies:
            plan[name] = _method(name, budget)
    if TUNED in strategies:
        if tuning is None:
            raise UserError(f"strategy '{TUNED}' needs problems to tune on (--tune-split, e.g. calib)")
        plan[TUNED] = _method("ias-bon", budget, estimate=tuning["estimate"], coverage=tuning["coverage"])
    for name, (knob, values) in SWEEPS.items():
        if name in strategies:
            for value in values:
                plan[f"sweep:{name}:{knob}={value}"] = _method(name, budget, **{knob: value})
    tuned = (tuning or {}).get("adaptive")
    confidence = _confidence_map(tuned)
    main = tuned["settings"] if tuned else {}
    if "ias-adaptive" in strategies:
        plan["ias-adaptive"] = _method("ias-adaptive", budget, **main, confidence_map=confidence)
        for b, settings in (tuned or {}).get("by_budget", {}).items():
            plan[f"ias-adaptive@{b}"] = _method("ias-adaptive", budget, **settings, confidence_map=confidence)
        for price in adaptive.PRICES:
            plan[f"sweep:ias-adaptive:price={price}"] = _method(
                "ias-adaptive", budget, **{**main, "price": price}, confidence_map=confidence
            )
    if "ias-adaptive-uncalibrated" in strategies:
        plan["ias-adaptive-uncalibrated"] = _method("ias-adaptive-uncalibrated", budget, **main)
    return plan


def replay(
    records: list[PoolProblem],
    strategies: Sequence[str],
    budget: Budget,
    tuning: dict | None = None,
    seed: int = 0,
    orderings: int = ORDERINGS,
    extract=None,
) -> dict[str, list[list[Outcome]]]:
    """Every asked-for method run on the pool in each of `orderings` orderings of every
    question's samples (`[problem][ordering]`; ordering 0: as drawn), by the engine that
    runs it live, so a replay and a live run cannot differ; and the oracles.
    `extract`: the task's answer extractor (step-level methods only; they do not run here)."""
    shuffled = [[adaptive.reorder(r, seed, k) for r in records] for k in range(orderings)]
    questions = [Question(Problem(r.id, r.question, ""), extract or _no_answer) for r in records]
    plan = _planned(strategies, budget, tuning)
    confidence = _confidence_map((tuning or {}).get("adaptive"))
    sources = [PoolSource(rows) for rows in shuffled]  # each reads its pool once, for every method
    results: dict[str, list[list[Outcome]]] = {}
    done: dict[int, list[list[Outcome]]] = {}  # a method planned under two names runs once
    for name, method in plan.items():
        if id(method) not in done:
            per_ordering = [run_method(method, questions, source) for source in sources]
            mapped = _maps_confidence(name, method)
            done[id(method)] = [
                [_outcome(answers[i], confidence if mapped else None) for answers in per_ordering]
                for i in range(len(records))
            ]
        results[name] = done[id(method)]
    if "oracle-alloc" in strategies or "oracle-ias" in strategies:
        views = [[adaptive.prefix_view(r) for r in rows] for rows in shuffled]
        results.update(_oracles(shuffled, views, strategies, budget, confidence))
    return results


def _no_answer(text: str) -> None:
    return None


def _maps_confidence(name: str, method) -> bool:
    """Whether a method's confidence is its chosen sample's calibrated score, which the tuning
    pool's map turns into a chance of being right (`ias-adaptive` maps its own; a vote's
    share and a raw score are no calibrated score)."""
    if getattr(method, "calibrated", True) is False or method.name == "ias-adaptive":
        return False
    return method.name != "bon" or method.selection != "majority"


def _outcome(answer: Answer, confidence: ConfidenceMap | None) -> Outcome:
    """A method's answer on one pool question as eval's figures read it."""
    choice = answer.choice
    stated = choice.confidence if confidence is None else float(confidence([choice.confidence])[0])
    return Outcome(
        choice.answer, bool(choice.correct), answer.n_samples, answer.generated_tokens, answer.prm_tokens, stated
    )


def _oracles(
    shuffled: list[list[PoolProblem]],
    views: list[list],
    strategies: Sequence[str],
    budget: Budget,
    confidence: ConfidenceMap,
) -> dict[str, list[list[Outcome]]]:
    """`oracle-ias` and `oracle-alloc@B` (which know every question's true curve), on every
    ordering (`shuffled[k][i]`, `views[k][i]`)."""
    results: dict[str, list[list[Outcome]]] = {}
    n = len(shuffled[0])
    if "oracle-ias" in strategies:
        results["oracle-ias"] = [
            [
                _mapped(adaptive.oracle_ias(rows[i], row_views[i], budget.coverage, budget.n_max), confidence)
                for rows, row_views in zip(shuffled, views)
            ]
            for i in range(n)
        ]
    if "oracle-alloc" in strategies:
        curves = adaptive.selected_curves(views)
        for b in adaptive.MEAN_BUDGETS:
            if b <= budget.n_max:
                sizes = oracle_allocation(curves, b * len(curves))
                per = [adaptive.oracle_alloc(rows, row_views, sizes) for rows, row_views in zip(shuffled, views)]
                results[f"oracle-alloc@{b}"] = [
                    [_mapped(per[k][i], confidence) for k in range(len(per))] for i in range(n)
                ]
    return results


def _mapped(outcome: Outcome, confidence: ConfidenceMap) -> Outcome:
    """The outcome with its chosen sample's calibrated score put through the confidence map."""
    if outcome.confidence is None:
        return outcome
    return dataclasses.replace(outcome, confidence=float(confidence([outcome.confidence])[0]))


def _confidence_map(tuned: dict | None) -> ConfidenceMap:
    """The tuning pool's map from a chosen sample's calibrated score to its chance of being
    right (identity without a tuning split)."""
    return ConfidenceMap.from_dict(tuned["confidence_map"]) if tuned else ConfidenceMap()


def tune_adaptive(records: list[PoolProblem], budget: Budget, tolerance: float, seed: int = 0) -> dict:
    """`ias-adaptive`'s confidence map and settings, from a tuning pool (other problems than
    the evaluated ones), every setting expected over the same number of orderings."""
    shuffled = [[adaptive.reorder(r, seed, k) for r in records] for k in range(ORDERINGS)]
    views = [[adaptive.prefix_view(r) for r in rows] for rows in shuffled]
    confidence = adaptive.fit_confidence([v for row in views for v in row])
    growth = method_class("ias-adaptive").growth  # the latency setting the method runs with
    grid = [
        g
        for x in dict.fromkeys((growth, *adaptive.BUDGET_GROWTHS))  # @B may also take BUDGET_GROWTHS
        for g in adaptive.adaptive_grid(views, shuffled, budget.n_max, confidence, x)
    ]
    one_sample = sum(sum(s.generated_tokens for s in r.samples) / len(r.samples) for r in records)
    return {
        **adaptive.choose_settings(grid, tolerance, one_sample, growth),
        "confidence_map": confidence.to_dict(),
        "n_problems": len(records),
        "grid": grid,
    }


def frontier(by_ordering: dict[str, list[list[Outcome]]], n_max: int) -> dict[str, list[dict]]:
    """Fixed-N accuracy and tokens of every selection rule at N = 1, 2, 4, ... N_max,
    expected over the orderings."""
    curves = {}
    for how in SELECTIONS:
        points = []
        for n in fixed_sizes(n_max):
            runs = by_ordering[f"frontier:{how}@{n}"]
            points.append({"n": n, **_point(runs)})
        curves[how] = points
    return curves


def _point(runs: list[list[Outcome]]) -> dict:
    """Expected accuracy and total tokens of a method's outcomes (`[problem][ordering]`)."""
    problems = [expected(r) for r in runs]
    return {
        "accuracy": round(sum(o.correct for o in problems) / len(problems), 4),
        "tokens": round(sum(o.tokens for o in problems), 1),
    }


def _sweeps(by_ordering: dict[str, list[list[Outcome]]]) -> dict[str, dict]:
    """Each adaptive method's main knob swept on the evaluated problems (drawn as a line;
    never used to choose a setting): `sweep:<method>:<knob>=<value>`."""
    sweeps: dict[str, dict] = {}
    for name, runs in by_ordering.items():
        if name.startswith("sweep:"):
            _, method, setting = name.split(":")
            knob, value = setting.split("=")
            sweeps.setdefault(method, {"knob": knob, "points": []})["points"].append(
                {"value": float(value), **_point(runs)}
            )
    return sweeps


def confidence_ece(by_ordering: dict[str, list[list[Outcome]]]) -> dict:
    """ECE of `ias-adaptive`'s stated confidence against its correctness over every
    (evaluated problem, ordering), and of the raw PRM score of the uncalibrated twin's answers."""

    def of(name: str) -> float | None:
        stated = [
            (o.confidence, float(o.correct)) for r in by_ordering.get(name, []) for o in r if o.confidence is not None
        ]
        if not stated:
            return None
        return round(ece([c for c, _ in stated], [y for _, y in stated]), 4)

    return {"calibrated": of("ias-adaptive"), "uncalibrated": of("ias-adaptive-uncalibrated")}


def _read_raw(plain_prm, records: list[PoolProblem]) -> list[PoolProblem]:
    """The records with every sample's raw PRM score (`raw_score`, last step), for the uncalibrated twin."""
    pairs = [(r.question, split_steps(s.text)) for r in records for s in r.samples]
    scores = [aggregate(x.scores, "last") for x in plain_prm.score(pairs)]
    out, start = [], 0
    for r in records:
        mine = scores[start : start + len(r.samples)]
        out.append(r.with_raw_samples([None if x == float("-inf") else x for x in mine]))
        start += len(r.samples)
    return out


def tune_budget(records: list[PoolProblem], budget: Budget, tolerance: float = 0.015) -> dict:
    """The cheapest IAS setting (estimate x coverage) whose accuracy on these problems' pool
    (as drawn) stays within `tolerance` of fixed Best-of-N_max there; the most accurate one
    if none does. Tuned on other problems than the evaluated ones, the choice is an honest one.
    """
    questions = [Question(Problem(r.id, r.question, ""), _no_answer) for r in records]
    source = PoolSource(records)

    def run(name: str, **settings) -> tuple[float, int]:
        answers = run_method(_method(name, budget, **settings), questions, source)
        return sum(bool(a.choice.correct) for a in answers) / len(answers), sum(a.generated_tokens for a in answers)

    reference, bon_tokens = run("bon", n=budget.n_max)
    grid: list[dict[str, Any]] = []
    for estimate in ("lower", "median"):
        for coverage in TUNE_COVERAGES:
            accuracy, tokens = run("ias-bon", estimate=estimate, coverage=coverage)
            grid.append({"estimate": estimate, "coverage": coverage, "accuracy": round(accuracy, 4), "tokens": tokens})
    good = [g for g in grid if g["accuracy"] >= reference - tolerance]
    best = min(good, key=lambda g: g["tokens"]) if good else max(grid, key=lambda g: (g["accuracy"], -g["tokens"]))
    return {
        "estimate": best["estimate"],
        "coverage": best["coverage"],
        "tolerance": tolerance,
        "n_problems": len(records),
        f"bon@{budget.n_max}_accuracy": round(reference, 4),
        "bon_tokens": bon_tokens,
        "grid": grid,
    }


def _question_key(question: str) -> str:
    """A question as compared for overlap: case and runs of whitespace do not matter."""
    return " ".join(question.split()).casefold()


def _untimed_note(folder: Path, summary: dict) -> list[str]:
    """A note when some problems of a run folder have no wall time (solved before ias timed
    each problem): they count 0 s, so the wall times built on them are too low."""
    untimed = summary["untimed_problems"]
    if not untimed:
        return []
    return [
        (
            f"{untimed} of {summary['n_problems']} problems in {folder} were solved before ias timed each "
            "problem: their wall time counts as 0 s"
        )
    ]


def _search_outcome(record: dict) -> Outcome:
    """A live search's result and what it spent (samples: step continuations drawn), from its
    `ias solve` record (`ias.methods.strategy`'s shape, a dict)."""
    usage = record["usage"]
    return Outcome(
        record["answer"],
        bool(record["correct"]),
        usage["samples"],
        usage["generated_tokens"],
        usage["prm_tokens"],
        record.get("confidence"),
    )  # records from before confidences: None


def _method_summary(
    results: list[Outcome], wall_s: float | None = None, share_of: tuple[float, int] | None = None
) -> dict:
    """Accuracy, its interval and spend; wall time measured (`wall_s`) or the pool's
    (`share_of` = pool wall time, pool tokens) in proportion to the tokens generated."""
    correct = [float(o.correct) for o in results]
    tokens = sum(o.tokens for o in results)
    if wall_s is None:
        if share_of is None:
            raise ValueError("a method's summary needs its measured wall time or the pool's to share")
        pool_wall, pool_tokens = share_of
        wall_s = pool_wall * tokens / pool_tokens
    return {
        "accuracy": round(sum(correct) / len(correct), 4),
        "ci95": bootstrap_ci(correct),
        "tokens": round(tokens, 1),  # means over the orderings: not whole numbers
        "samples": round(sum(o.samples for o in results), 2),
        "prm_tokens": round(sum(o.prm_tokens for o in results), 1),
        "wall_s": round(wall_s, 2),
    }


def _write_records(
    path: Path, records: list[PoolProblem], raw_t0: list[float], outcomes: dict[str, list[Outcome]]
) -> None:
    """Per problem: its true success rate in the pool, its budget estimates, every method's outcome."""
    path.unlink(missing_ok=True)
    with RecordWriter(path) as writer:
        writer.write(
            [
                ProblemOutcomes(
                    r.id,
                    r.p_true,
                    adaptive.lower_bound(r),
                    raw,
                    {name: results[k] for name, results in outcomes.items()},
                ).to_json()
                for k, (r, raw) in enumerate(zip(records, raw_t0))
            ]
        )
