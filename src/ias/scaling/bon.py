"""Fixed-budget Best-of-N, batched across problems: one policy call and one PRM call per batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ias.policy.base import Policy, SamplingParams, derive_seed
from ias.prm.base import PRM
from ias.prompting import render_prompt
from ias.scaling.select import SELECTIONS, aggregate, select
from ias.tasks.base import Task
from ias.types import Problem, Usage, split_steps


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
        prompts = [render_prompt(task, p, policy) for p in problems]
        groups = policy.sample(prompts, self.n, params, [derive_seed(seed, p.id) for p in problems])
        flat = [(p, s) for p, group in zip(problems, groups) for s in group]
        scored = prm.score([(p.question, split_steps(s.text)) for p, s in flat]) if prm else None
        questions = prm.score([(p.question, []) for p in problems]) if prm and self.score_question else None
        records = []
        for k, (problem, group) in enumerate(zip(problems, groups)):
            rows = []
            for j, sample in enumerate(group):
                reading = scored[k * self.n + j] if scored else None
                answer = task.extract(sample.text)
                rows.append(
                    {
                        "text": sample.text,
                        "answer": answer,
                        "correct": task.grade(problem, sample.text),
                        "step_scores": reading.scores if reading else None,
                        "score": aggregate(reading.scores, self.aggregation) if reading else None,
                        "quantiles": reading.quantiles[-1] if reading and reading.quantiles else None,
                        "prm_skipped": reading.skipped if reading else None,
                        "prompt_tokens": sample.prompt_tokens,
                        "generated_tokens": sample.generated_tokens,
                        "prm_tokens": reading.tokens if reading else 0,
                        "finish_reason": sample.finish_reason,
                        **({"logprobs": sample.logprobs} if sample.logprobs is not None else {}),
                    }
                )
            record = self._record(problem, rows, prm is not None)
            if questions is not None:
                record["question_reading"] = _question_reading(questions[k])
            records.append(record)
        return records

    def _record(self, problem: Problem, rows: list[dict], scored: bool) -> dict:
        answers = [r["answer"] for r in rows]
        scores = [r["score"] if scored else 0.0 for r in rows]
        choices = {}
        for how in SELECTIONS:
            if how != "majority" and not scored:
                continue
            i = select(answers, scores, how)
            choices[how] = {"index": i, "answer": rows[i]["answer"], "correct": rows[i]["correct"]}
        chosen = choices[self.selection]
        usage = Usage(
            prompt_tokens=sum(r["prompt_tokens"] for r in rows),
            generated_tokens=sum(r["generated_tokens"] for r in rows),
            prm_tokens=sum(r["prm_tokens"] for r in rows),
            samples=len(rows),
        )
        for r in rows:
            r["score"] = _json_float(r["score"])
        return {
            "id": problem.id,
            "question": problem.question,
            "reference": problem.answer,
            "meta": problem.meta,
            "answer": chosen["answer"],
            "correct": chosen["correct"],
            "choices": choices,
            "usage": usage.to_dict(),
            "samples": rows,
        }


def _question_reading(reading) -> dict:
    """The PRM's reading of the question alone: the difficulty estimate IAS budgets from."""
    return {
        "score": reading.scores[0] if reading.scores else None,
        "quantiles": reading.quantiles[0] if reading.quantiles else None,
        "prm_tokens": reading.tokens,
        "skipped": reading.skipped,
    }


def _json_float(x: float | None) -> float | None:
    """JSON has no infinity: an unscored sample's score is written as null."""
    return None if x is None or x == float("-inf") else x
