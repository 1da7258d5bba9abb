"""The engine: runs one method on many questions at once, batching their requests.

Every question's generator runs until it yields a request; the engine then answers all
waiting requests of one kind together (every question's next wave of samples in one
policy call and one PRM call, whatever its size), sends the results back and repeats. A
question that stops gets nothing more: what it drew is what it spent.

Requests are answered by a `Source`: `LiveSource` (`ias.methods.sources`) samples and
reads with the real policy and PRM; `PoolSource` serves a shared pool of samples (`ias
eval`). The engine counts what each question spent from the results themselves.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from ias.methods.base import (
    Choice, Draw, Extend, Gather, Question, QuestionReading, ReadQuestion, ReadSteps, Request, Scored,
)
from ias.prm.base import StepScores
from ias.types import Sample


class Source(Protocol):
    """Answers the requests of many questions at once (each list is one batch)."""

    def read_questions(self, questions: Sequence[Question]) -> list[QuestionReading]: ...

    def draw(self, asks: Sequence[tuple[Question, int, Draw]]) -> list[list[Scored]]:
        """For each (question, first index, request): samples first .. first + count - 1."""
        ...

    def extend(self, asks: Sequence[tuple[Question, Extend]]) -> list[list[list[Sample]]]: ...

    def read_steps(self, asks: Sequence[tuple[Question, ReadSteps]]) -> list[list[StepScores]]: ...


@dataclass
class Answer:
    """One question's result: the `choice` (text, answer, calibrated confidence), the whole
    samples drawn, and what it cost (generated and PRM tokens, samples or continuations
    drawn, its wall time from start to its last request), with each wave's decision."""

    question: Question
    choice: Choice
    samples: list[Scored] = field(default_factory=list)
    generated_tokens: int = 0
    prm_tokens: int = 0
    prompt_tokens: int = 0
    n_samples: int = 0
    wall_s: float = 0.0
    waves: list[dict] = field(default_factory=list)

    @property
    def text(self) -> str | None:
        return self.choice.text

    @property
    def answer(self) -> str | None:
        return self.choice.answer

    @property
    def confidence(self) -> float:
        return self.choice.confidence


@dataclass
class _Run:
    """One question's generator and what it has spent so far."""

    question: Question
    solving: Any
    answer: Answer
    request: Request | None = None

    def send(self, value: Any, started: float) -> None:
        """Resume the generator with `value`; keep its next request, or its choice."""
        try:
            self.request = self.solving.send(value)
        except StopIteration as stop:
            self.request = None
            self.answer.choice = stop.value if stop.value is not None else Choice.of(None, 0.0)
        self.answer.wall_s = time.monotonic() - started


def run_method(method: Any, questions: Sequence[Question], source: Source) -> list[Answer]:
    """`method` on every question, their requests batched kind by kind; answers in order."""
    started = time.monotonic()
    runs = [_Run(q, method.solve(q), Answer(q, Choice.of(None, 0.0))) for q in questions]
    for run in runs:
        run.send(None, started)
    while True:
        waiting = [r for r in runs if r.request is not None]
        if not waiting:
            return [r.answer for r in runs]
        kinds = [k for k in (ReadQuestion, Draw, Extend, ReadSteps) if any(isinstance(r.request, k) for r in waiting)]
        if not kinds:  # every unfinished question waits on a decision over all of them
            _gather(method, waiting, started)
            continue
        batch = [r for r in waiting if isinstance(r.request, kinds[0])]
        for run, result in zip(batch, _answer(kinds[0], batch, source)):
            run.send(result, started)


def _answer(kind: type, batch: list[_Run], source: Source) -> list[Any]:
    """The results of one kind of request for every question in `batch`, its spend counted."""
    if kind is ReadQuestion:
        readings = source.read_questions([r.question for r in batch])
        for run, reading in zip(batch, readings):
            run.answer.prm_tokens += reading.prm_tokens
        return readings
    if kind is Draw:
        drawn = source.draw([(r.question, len(r.answer.samples), r.request) for r in batch])
        for run, samples in zip(batch, drawn):
            answer = run.answer
            answer.samples.extend(samples)
            answer.n_samples += len(samples)
            answer.generated_tokens += sum(s.generated_tokens for s in samples)
            answer.prompt_tokens += sum(s.prompt_tokens for s in samples)
            answer.prm_tokens += sum(s.prm_tokens for s in samples)
            answer.waves.append({"draw": run.request.count, **run.request.note})
        return drawn
    if kind is Extend:
        extended = source.extend([(r.question, r.request) for r in batch])
        for run, groups in zip(batch, extended):
            samples = [s for group in groups for s in group]
            run.answer.n_samples += len(samples)
            run.answer.generated_tokens += sum(s.generated_tokens for s in samples)
            run.answer.prompt_tokens += sum(s.prompt_tokens for s in samples)
            run.answer.waves.append({"extend": list(run.request.counts), **run.request.note})
        return extended
    read = source.read_steps([(r.question, r.request) for r in batch])
    for run, readings in zip(batch, read):
        run.answer.prm_tokens += sum(x.tokens for x in readings)
    return read


def _gather(method: Any, waiting: list[_Run], started: float) -> None:
    """Answer a decision over all waiting questions (every one sent a `Gather`)."""
    assert all(isinstance(r.request, Gather) for r in waiting)
    shares = method.gather([r.request.value for r in waiting])
    for run, share in zip(waiting, shares):
        run.send(share, started)
