"""Step-level beam search, fixed or instance-adaptive (IAS-of-K / IAS-of-M), batched across problems.

Round 0 samples the first `freq` steps of `n_init` solutions per problem (the adaptive search
samples N_IAS of the question's lower bound instead, at most `n_init`). Every round the PRM
reads each new candidate at its last step; candidates the policy finished, or whose new
step states the final answer, leave the search; of the unfinished ones the best K are kept
and each is continued by M samples. The fixed
search keeps K = k_max and samples M = m_max; the adaptive one takes K from IAS-of-K and M
from IAS-of-M (SPEC §5). A search at `max_rounds` continues its beams to the end.

One statistic ranks candidates, counts the budget and chooses the answer (the reference
ranked by one and counted by another): the calibrated lower quantile for the adaptive
search, the PRM's score (the calibrated median, with a calibrator) for the fixed one.

All problems of a batch advance together: one PRM call per round, one policy call per
distinct beam width M. Continuation j of kept beam b in round r is sample j of the seed
(run seed, problem id, r, b), so records do not depend on the batch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Sequence

from ias.errors import UserError
from ias.policy.base import Policy, SamplingParams, derive_seed
from ias.prm.base import PRM, StepScores
from ias.prompting import render_prompt
from ias.scaling.budget import UNREAD, ias_of_k, ias_of_m, n_ias
from ias.scaling.select import select
from ias.tasks.base import Task
from ias.types import STEP_DELIMITER, Problem, Usage, split_steps


@dataclass
class _Candidate:
    steps: list[str]
    finished: bool
    text: str = ""  # the whole solution, once finished
    answer: str | None = None
    correct: bool = False
    stat: float = 0.0
    score: float | None = None  # the PRM's (calibrated median's) reading at its last step: its chance of being right


@dataclass
class _Search:
    """One problem's search state."""

    problem: Problem
    beams: list[_Candidate] = field(default_factory=lambda: [_Candidate([], False)])
    per_beam: list[int] = field(default_factory=list)  # samples for each beam in the next round
    finished: list[_Candidate] = field(default_factory=list)
    rounds: list[dict] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    lower_t0: float | None = None


@dataclass(frozen=True)
class BeamSearch:
    """Step-level beam search; `adaptive` budgets its width with IAS-of-K and IAS-of-M."""

    n_init: int = 64
    k_max: int = 8
    m_max: int = 8
    freq: int = 1
    max_rounds: int = 16
    adaptive: bool = False
    coverage: float = 0.99
    n_max: int = 64  # the cap of N_IAS inside IAS-of-K/M
    name: str = "beam"

    def __post_init__(self) -> None:
        for key in ("n_init", "k_max", "m_max", "freq", "max_rounds", "n_max"):
            if getattr(self, key) < 1:
                raise UserError(f"beam search needs {key} >= 1, got {getattr(self, key)}")
        if not 0 < self.coverage < 1:
            raise UserError(f"coverage must be in (0, 1), got {self.coverage}")

    def config(self) -> dict:
        """The settings that change records: coverage and n_max only budget the adaptive search,
        so the fixed one leaves them out (another --coverage still resumes its folder)."""
        budgeting = ("coverage", "n_max") if self.adaptive else ()
        keys = ("n_init", "k_max", "m_max", "freq", "max_rounds", "adaptive", *budgeting)
        return {"strategy": self.name, **{k: getattr(self, k) for k in keys}}

    def run(
        self,
        problems: Sequence[Problem],
        task: Task,
        policy: Policy,
        prm: PRM | None,
        params: SamplingParams,
        seed: int,
    ) -> list[dict]:
        if prm is None:
            raise UserError("beam search needs a PRM")
        searches = [_Search(p) for p in problems]
        if self.adaptive:
            readings = prm.score([(p.question, []) for p in problems])
            for search, reading in zip(searches, readings):
                search.lower_t0 = self._statistic(reading)
                search.usage.prm_tokens += reading.tokens
                search.per_beam = [n_ias(search.lower_t0, self.coverage, 1, self.n_init)]
        else:
            for search in searches:
                search.per_beam = [self.n_init]
        for round_ in range(self.max_rounds):
            active = [s for s in searches if s.beams]
            if not active:
                break
            last = round_ == self.max_rounds - 1
            candidates = self._expand(active, task, policy, params, seed, round_, last)
            self._score(active, candidates, prm)
            for search, found in zip(active, candidates):
                self._keep(search, found, round_)
        return [self._record(s) for s in searches]

    def _expand(self, active, task, policy, params, seed, round_, last) -> list[list[_Candidate]]:
        """`freq` more steps of every kept beam's samples. A beam's M samples are one n = M
        request (servers and vLLM share its prefix); one policy call per distinct M."""
        stop = tuple(dict.fromkeys([*params.stop, *(() if last else (STEP_DELIMITER,))]))
        the_params = dataclasses.replace(params, stop=stop)
        jobs = [(k, beam, (round_, b), m) for k, s in enumerate(active)
                for b, (beam, m) in enumerate(zip(s.beams, s.per_beam))]
        found: list[list[_Candidate]] = [[] for _ in active]
        for sub in range(self.freq):
            if not jobs:
                break
            prompts = [render_prompt(task, active[k].problem, policy, beam.steps) for k, beam, _, _ in jobs]
            seeds = [derive_seed(seed, active[k].problem.id, "beam", *where, sub) for k, _, where, _ in jobs]
            groups = _sample_by_size(policy, prompts, [m for *_, m in jobs], the_params, seeds)
            still_open = []
            for (k, parent, where, _), group in zip(jobs, groups):
                for j, sample in enumerate(group):
                    active[k].usage = active[k].usage + sample.usage
                    child = _child(task, active[k].problem, parent, sample)
                    if child.finished or sub == self.freq - 1:
                        found[k].append(child)
                    else:
                        still_open.append((k, child, (*where, j), 1))
            jobs = still_open
        return found

    def _score(self, active: list[_Search], candidates: list[list[_Candidate]], prm: PRM) -> None:
        """One batched PRM call reads every new candidate at its last step."""
        flat = [(k, c) for k, found in enumerate(candidates) for c in found]
        readings = prm.score([(active[k].problem.question, c.steps) for k, c in flat])
        for (k, candidate), reading in zip(flat, readings):
            active[k].usage.prm_tokens += reading.tokens
            candidate.stat = self._statistic(reading)
            last = reading.scores[-1] if reading.scores and not reading.skipped else None
            candidate.score = None if last is None or math.isnan(last) else float(last)

    def _keep(self, search: _Search, found: list[_Candidate], round_: int) -> None:
        """Finished candidates leave; the best K unfinished become the beams, M samples each."""
        search.finished.extend(c for c in found if c.finished)
        open_ = sorted((c for c in found if not c.finished), key=lambda c: -c.stat)
        if not open_:
            search.beams, search.per_beam = [], []
            search.rounds.append({"candidates": len(found), "kept": 0, "per_beam": 0})
            return
        if self.adaptive:
            stats = [c.stat for c in open_]
            k = ias_of_k(stats, self.k_max, self.m_max, self.coverage, self.n_max)
            m = ias_of_m(stats[:k], self.m_max, self.coverage, self.n_max)
        else:
            k, m = min(self.k_max, len(open_)), self.m_max
        search.beams, search.per_beam = open_[:k], [m] * k
        search.rounds.append({"candidates": len(found), "kept": k, "per_beam": m,
                              "open_stats": [round(c.stat, 6) for c in open_]})

    def _statistic(self, reading: StepScores) -> float:
        """The one statistic: the lower quantile (adaptive) or the score at the last step; an
        unreadable candidate counts as hopeless (UNREAD)."""
        if reading.skipped or not reading.scores:
            return UNREAD
        value = reading.quantiles[-1][0] if self.adaptive and reading.quantiles else reading.scores[-1]
        return UNREAD if math.isnan(value) else min(1.0, max(0.0, float(value)))

    def _record(self, search: _Search) -> dict:
        done = search.finished
        i = select([c.answer for c in done], [c.stat for c in done], "best")
        chosen = done[i] if i is not None else None
        return {
            "id": search.problem.id,
            "question": search.problem.question,
            "reference": search.problem.answer,
            "meta": search.problem.meta,
            "answer": chosen.answer if chosen else None,
            "correct": bool(chosen and chosen.correct),
            "confidence": None if chosen is None or chosen.score is None else round(chosen.score, 6),
            "usage": search.usage.to_dict(),
            "lower_t0": search.lower_t0,
            "rounds": search.rounds,
            "finished": [{"text": c.text, "answer": c.answer, "correct": c.correct, "stat": round(c.stat, 6)}
                         for c in done],
        }


def _sample_by_size(policy: Policy, prompts: list[str], sizes: list[int], params: SamplingParams,
                    seeds: list[int]) -> list[list]:
    """`sizes[i]` samples of prompt i; sample j depends only on (seeds[i], j), whatever the grouping."""
    out: list[list] = [[] for _ in prompts]
    for size in sorted(set(sizes)):
        idx = [i for i, m in enumerate(sizes) if m == size]
        for i, group in zip(idx, policy.sample([prompts[i] for i in idx], size, params, [seeds[i] for i in idx])):
            out[i] = group
    return out


def _child(task: Task, problem: Problem, parent: _Candidate, sample) -> _Candidate:
    """The candidate a sample makes: a finished solution when the policy ended it (anything
    but stopping at the step delimiter) or its new step states the final answer (models that
    write on after `\\boxed{}` would otherwise run every round); else one more step."""
    steps = parent.steps + split_steps(sample.text)
    text = "".join(step + STEP_DELIMITER for step in parent.steps) + sample.text  # as the policy saw it
    answer = task.extract(text)
    if sample.finish_reason == "stop" and sample.stop == STEP_DELIMITER and answer is None:
        return _Candidate(steps, False)
    return _Candidate(steps, True, text, answer, task.grade(problem, text))
