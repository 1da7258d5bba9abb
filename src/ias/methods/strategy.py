"""Any registered method as a runner `Strategy`: `ias solve --strategy NAME` over a dataset.

A batch of problems is solved together by the engine with the live policy and PRM, every
sample graded against its reference; each problem becomes one record holding exactly what
was drawn for it (its usage is the samples' own token counts) and, for methods that draw
whole samples, every sample and the choice of every selection rule over them (the same
keys as fixed Best-of-N's records, so the summary's `by_selection` reads both). Records
carry no wall time (the runner keeps it in `timing.jsonl`): the same run twice writes the
same bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Sequence

from ias.methods.base import Choice, Question, Scored
from ias.methods.engine import Answer, run_method
from ias.methods.sources import LiveSource
from ias.policy.base import Policy, SamplingParams
from ias.prm.base import PRM
from ias.scaling.select import SELECTIONS, select
from ias.tasks.base import Task
from ias.types import Problem

#: Settings that are objects rather than knobs: recorded by the hash of their content.
OBJECT_SETTINGS = ("confidence_map",)


@dataclass(frozen=True)
class MethodStrategy:
    """A registered method run live over batches of problems (`runner.run_dataset`)."""

    method: Any

    @property
    def name(self) -> str:
        return self.method.name

    def config(self) -> dict:
        """The strategy's name and every setting that changes its records; a confidence map
        by the hash of its content."""
        config: dict[str, Any] = {"strategy": self.name}
        for f in dataclasses.fields(self.method):
            value = getattr(self.method, f.name)
            if f.name in OBJECT_SETTINGS:
                if value is not None:
                    config[f"{f.name}_sha"] = content_sha(value.to_dict())
                continue
            config[f.name] = value
        return config

    def run(
        self,
        problems: Sequence[Problem],
        task: Task,
        policy: Policy,
        prm: PRM | None,
        params: SamplingParams,
        seed: int,
    ) -> list[dict]:
        questions = [Question(p, task.extract) for p in problems]
        answers = run_method(self.method, questions, LiveSource(task, policy, prm, params, seed, grade=True))
        return [problem_record(a, task, self.method) for a in answers]


def content_sha(data: Any) -> str:
    """A short hash of JSON-ready `data` (key order aside)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def problem_record(answer: Answer, task: Task, method: Any) -> dict:
    """One problem's record: the choice (graded), what it cost, its waves and, when it drew
    whole samples, each sample and every selection rule's choice over them."""
    problem = answer.question.problem
    choice = answer.choice
    record = {
        "id": problem.id,
        "question": problem.question,
        "reference": problem.answer,
        "meta": problem.meta,
        "answer": choice.answer,
        "correct": chosen_correct(choice, task, problem),
        "solution": choice.text,  # the chosen text (not "text": that key marks a sample)
        "confidence": json_float(choice.confidence),
        **({"interval": list(choice.interval)} if choice.interval is not None else {}),
        "usage": {
            "prompt_tokens": answer.prompt_tokens,
            "generated_tokens": answer.generated_tokens,
            "prm_tokens": answer.prm_tokens,
            "samples": answer.n_samples,
        },
        "waves": answer.waves,
    }
    if answer.samples:
        aggregation = getattr(method, "aggregation", "last")
        rows = [sample_row(s, aggregation) for s in answer.samples]
        record["choices"] = selection_choices(rows)
        record["samples"] = rows
    return record


def chosen_correct(choice: Choice, task: Task, problem: Problem) -> bool:
    """The choice graded: as carried from its graded sample, else its text against the reference."""
    if choice.correct is not None:
        return bool(choice.correct)
    return choice.text is not None and bool(task.grade(problem, choice.text))


def sample_row(sample: Scored, aggregation: str = "last") -> dict:
    """A drawn sample as fixed Best-of-N records it (and `raw_score`: the PRM's own)."""
    from ias.methods.bon import aggregated

    score = aggregated(sample, aggregation)
    return {
        "text": sample.text,
        "answer": sample.answer,
        "correct": bool(sample.correct),
        "step_scores": list(sample.step_scores) if sample.step_scores is not None else None,
        "score": json_float(score),
        "quantiles": list(sample.quantiles) if sample.quantiles is not None else None,
        "raw_score": json_float(sample.raw_score),
        "prompt_tokens": sample.prompt_tokens,
        "generated_tokens": sample.generated_tokens,
        "prm_tokens": sample.prm_tokens,
        "finish_reason": sample.finish_reason,
        **({"logprobs": list(sample.logprobs)} if sample.logprobs is not None else {}),
    }


def selection_choices(rows: list[dict]) -> dict:
    """Every selection rule's choice over the drawn samples (the PRM rules only when the
    PRM read them), as fixed Best-of-N records them."""
    answers = [r["answer"] for r in rows]
    read = any(r["score"] is not None for r in rows)
    scores = [r["score"] if r["score"] is not None else float("-inf") for r in rows]
    choices = {}
    for how in SELECTIONS:
        if how != "majority" and not read:
            continue
        i = select(answers, scores if read else [0.0] * len(rows), how)
        choices[how] = (
            {"index": i, "answer": rows[i]["answer"], "correct": rows[i]["correct"]}
            if i is not None
            else {"index": None, "answer": None, "correct": False}
        )
    return choices


def json_float(x: float | None) -> float | None:
    """JSON has no infinity or NaN: such a value is written as null."""
    return None if x is None or not math.isfinite(x) else float(x)


def needs_prm(method: Any, question: Question) -> bool:
    """Whether `method` reads the PRM, judged by its first request on `question` (a method
    that only votes draws unread samples first), so a run without one is refused up front."""
    from ias.methods.base import Draw, Gather

    solving = method.solve(question)
    try:
        first = next(solving)
    except StopIteration:
        return False
    finally:
        solving.close()
    return not (isinstance(first, Draw) and not first.read) and not isinstance(first, Gather)
