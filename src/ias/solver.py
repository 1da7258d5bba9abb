"""`ias.Solver` and `ias ask`: any registered method on your own questions, live.

A question needs no reference: its samples are not graded. Its samples are seeded by the
run seed and the question's text (a typed question's id is a hash of it), so the same
question gets the same answer alone or among others, with `solve` or `solve_many`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

from ias.methods.base import Question
from ias.methods.engine import Answer, run_method
from ias.methods.sources import LiveSource
from ias.methods.strategy import json_float, sample_row
from ias.policy.base import SamplingParams
from ias.specs import AskRun, MethodSpec, PolicySpec, PRMSpec, from_keys
from ias.tasks.base import Task, get_task
from ias.types import Problem


class Solver:
    """A method (`strategy`, with `settings` and, for ias-adaptive, a `tuning` file) over a
    policy and PRM, given as zoo/folder names or loaded objects; `calibrator` (a folder from
    `ias calibrate`) makes the PRM's scores calibrated. `task` gives the prompt format and
    answer extraction. `params`: sampling settings (default: the policy's own).

    >>> solver = ias.Solver("arith-weak", "arith-prm", strategy="ias-adaptive", n_max=16)
    >>> answer = solver.solve("Compute 17*23.")
    >>> answer.answer, answer.confidence, answer.generated_tokens
    """

    def __init__(
        self,
        policy: Any,
        prm: Any = None,
        calibrator: str | Path | None = None,
        strategy: str = "ias-adaptive",
        task: str | Task = "arith",
        seed: int = 0,
        tuning: str | Path | None = None,
        params: SamplingParams | None = None,
        **settings: Any,
    ):
        from ias.calibration.calibrate import calibrated_prm
        from ias.errors import UserError
        from ias.loaders import live_method, load_policy_spec, load_prm_spec, sampling_params

        self.method = live_method(MethodSpec(strategy, settings, str(tuning) if tuning is not None else None))
        self.task = get_task(task) if isinstance(task, str) else task
        self.policy = load_policy_spec(PolicySpec(policy)) if isinstance(policy, str) else policy
        self.prm = load_prm_spec(PRMSpec(prm)) if isinstance(prm, str) else prm
        if calibrator is not None:
            if self.prm is None:
                raise UserError("a calibrator needs a PRM")
            self.prm = calibrated_prm(self.prm, calibrator)
        self.params = params or sampling_params(self.policy)
        self.seed = seed

    def solve(self, question: str | Problem) -> Answer:
        """One question's answer, its calibrated confidence and what it cost."""
        return self.solve_many([question])[0]

    def solve_many(self, questions: Sequence[str | Problem]) -> list[Answer]:
        """Every question's answer, their requests batched together (one policy call per wave).
        A question's answer does not depend on the others, except under `fleet`, whose budget
        is shared among the questions solved together."""
        asked = [Question(as_problem(q), self.task.extract) for q in questions]
        source = LiveSource(self.task, self.policy, self.prm, self.params, self.seed, grade=False)
        return run_method(self.method, asked, source)


def as_problem(question: str | Problem) -> Problem:
    """A typed question as a problem without a reference, its id a hash of its text."""
    if isinstance(question, Problem):
        return question
    if not isinstance(question, str) or not question.strip():
        from ias.errors import UserError

        raise UserError("a question must be non-empty text")
    return Problem(id="q-" + hashlib.sha256(question.encode()).hexdigest()[:16], question=question, answer="")


def ask(question: str, run: AskRun | None = None, /, **keys: Any) -> Answer:
    """`ias ask`: one typed question answered live; `run` (an `AskRun` spec) and its settings by
    key (`policy`, `prm`, `calibrator`, `strategy`, `settings`, `tuning`, `seed`...) as for `ias solve`."""
    from ias.loaders import live_method, load_optional_prm, load_policy_spec, sampling_params

    run = from_keys(AskRun, keys, run)
    live_method(run.method)  # a bad strategy or setting is named before any model loads
    the_task = get_task(run.task.name, **run.task.options)
    the_prm = load_optional_prm(run.prm)
    the_policy = load_policy_spec(run.policy)
    solver = Solver(
        the_policy,
        the_prm,
        None,
        run.method.strategy,
        the_task,
        run.seed,
        run.method.tuning,
        sampling_params(the_policy, run.sampling),
        **run.method.settings,
    )
    return solver.solve(question)


def answer_json(answer: Answer) -> dict:
    """An answer as JSON: the choice, its confidence, every sample, the compute and the waves."""
    return {
        "question": answer.question.problem.question,
        "text": answer.text,
        "answer": answer.answer,
        "confidence": json_float(answer.confidence),
        "interval": list(answer.choice.interval) if answer.choice.interval is not None else None,
        "usage": {
            "prompt_tokens": answer.prompt_tokens,
            "generated_tokens": answer.generated_tokens,
            "prm_tokens": answer.prm_tokens,
            "samples": answer.n_samples,
        },
        "wall_s": round(answer.wall_s, 4),
        "waves": answer.waves,
        "samples": [{k: v for k, v in sample_row(s).items() if k != "correct"} for s in answer.samples],
    }


def answer_block(answer: Answer) -> str:
    """The answer, its confidence and the compute spent, in a few lines for a terminal."""
    return (
        f"answer: {answer.answer if answer.answer is not None else '(none found)'}\n"
        f"confidence: {answer.confidence:.3f}\n"
        f"compute: {answer.n_samples} samples, {answer.generated_tokens} generated tokens, "
        f"{answer.prm_tokens} PRM tokens, {answer.wall_s:.2f} s"
    )
