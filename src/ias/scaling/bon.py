"""Fixed-budget Best-of-N, batched across problems: one policy call and one PRM call per batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ias.policy.base import Policy, SamplingParams, derive_seed
from ias.prm.base import PRM, StepScores
from ias.prompting import render_prompt
from ias.scaling.pool import PoolChoice, PoolProblem, PoolReading, PoolSample
from ias.scaling.select import SELECTIONS, aggregate, select
from ias.tasks.base import Task
from ias.types import Problem, Sample, Usage, split_steps


@dataclass(frozen=True)
class BestOfN:
    """Sample `n` solutions per problem, score every step, choose one answer.

    Every record holds the choice of each selection rule (best score, majority vote,
    PRM-weighted vote); `selection` names the one reported as the answer.
    """

    n: int
    aggregation: str = "last"
    selection: str = "best"
    name: str = "bon"
    score_question: bool = False  # also read the PRM on the question alone (t = 0), as IAS needs

    def config(self) -> dict:
        return {"strategy": self.name, "n": self.n, "aggregation": self.aggregation, "selection": self.selection}

    def run(
        self,
        problems: Sequence[Problem],
        task: Task,
        policy: Policy,
        prm: PRM | None,
        params: SamplingParams,
        seed: int,
    ) -> list[dict]:
        """The problems' records as the runner writes them (`PoolProblem.to_json`)."""
        return [r.to_json() for r in self.records(problems, task, policy, prm, params, seed)]

    def records(
        self,
        problems: Sequence[Problem],
        task: Task,
        policy: Policy,
        prm: PRM | None,
        params: SamplingParams,
        seed: int,
    ) -> list[PoolProblem]:
        prompts = [render_prompt(task, p, policy) for p in problems]
        groups = policy.sample(prompts, self.n, params, [derive_seed(seed, p.id) for p in problems])
        flat = [(p, s) for p, group in zip(problems, groups) for s in group]
        scored = prm.score([(p.question, split_steps(s.text)) for p, s in flat]) if prm else None
        questions = prm.score([(p.question, []) for p in problems]) if prm and self.score_question else None
        records = []
        for k, (problem, group) in enumerate(zip(problems, groups)):
            readings = [scored[k * self.n + j] for j in range(len(group))] if scored else [None] * len(group)
            scores = [aggregate(r.scores, self.aggregation) for r in readings if r] if scored else None
            rows = tuple(
                _sample(task, problem, sample, reading, scores[j] if scores else None)
                for j, (sample, reading) in enumerate(zip(group, readings))
            )
            reading = _question_reading(questions[k]) if questions is not None else None
            records.append(self._record(problem, rows, scores, reading))
        return records

    def _record(
        self, problem: Problem, rows: tuple[PoolSample, ...], scores: list[float] | None, reading: PoolReading | None
    ) -> PoolProblem:
        """`scores`: each sample's aggregated score (-inf: unscored); None without a PRM."""
        answers = [r.answer for r in rows]
        choices = {}
        for how in SELECTIONS:
            if how != "majority" and scores is None:
                continue
            i = select(answers, scores if scores is not None else [0.0] * len(rows), how)
            choices[how] = (
                PoolChoice(i, rows[i].answer, rows[i].correct) if i is not None else PoolChoice(None, None, False)
            )
        chosen = choices[self.selection]
        usage = Usage(
            prompt_tokens=sum(r.prompt_tokens for r in rows),
            generated_tokens=sum(r.generated_tokens for r in rows),
            prm_tokens=sum(r.prm_tokens for r in rows),
            samples=len(rows),
        )
        return PoolProblem(
            id=problem.id,
            question=problem.question,
            samples=rows,
            reference=problem.answer,
            meta=problem.meta,
            answer=chosen.answer,
            correct=chosen.correct,
            choices=choices,
            usage=usage,
            question_reading=reading,
        )


def _sample(
    task: Task, problem: Problem, sample: Sample, reading: StepScores | None, score: float | None
) -> PoolSample:
    """A drawn sample, graded, with the PRM's reading of it (None: no PRM)."""
    return PoolSample(
        text=sample.text,
        answer=task.extract(sample.text),
        correct=task.grade(problem, sample.text),
        score=_json_float(score),
        generated_tokens=sample.generated_tokens,
        prm_tokens=reading.tokens if reading else 0,
        finish_reason=sample.finish_reason,
        step_scores=tuple(reading.scores) if reading else None,
        quantiles=tuple(reading.quantiles[-1]) if reading and reading.quantiles else None,
        prm_skipped=reading.skipped if reading else None,
        prompt_tokens=sample.prompt_tokens,
        logprobs=tuple(sample.logprobs) if sample.logprobs is not None else None,
    )


def _question_reading(reading: StepScores) -> PoolReading:
    """The PRM's reading of the question alone: the difficulty estimate IAS budgets from."""
    return PoolReading(
        score=reading.scores[0] if reading.scores else None,
        quantiles=tuple(reading.quantiles[0]) if reading.quantiles else None,
        prm_tokens=reading.tokens,
        skipped=reading.skipped,
    )


def _json_float(x: float | None) -> float | None:
    """JSON has no infinity: an unscored sample's score is written as null."""
    return None if x is None or x == float("-inf") else x
