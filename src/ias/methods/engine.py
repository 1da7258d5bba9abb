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
from typing import Any, Protocol, Sequence, TypeVar

from ias.methods.base import (
    Choice,
    Draw,
    Extend,
    Gather,
    Question,
    QuestionReading,
    ReadQuestion,
    ReadSteps,
    Request,
    Scored,
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
class Run:
    """One question's generator under its method, and its answer so far."""

    method: Any
    question: Question
    solving: Any
    answer: Answer
    started: float
    request: Request | None = None
    error: BaseException | None = None  # why it stopped unanswered (an engine that isolates failures)

    @property
    def done(self) -> bool:
        return self.request is None

    def fail(self, error: BaseException) -> None:
        self.request, self.error = None, error

    def send(self, value: Any) -> None:
        """Resume the generator with `value`; keep its next request, or its choice."""
        try:
            self.request = self.solving.send(value)
        except StopIteration as stop:
            self.request = None
            self.answer.choice = stop.value if stop.value is not None else Choice.of(None, 0.0)
        self.answer.wall_s = time.monotonic() - self.started


class Engine:
    """Questions under way, each with its own method; `step` answers one kind of request for
    every question waiting on it, in one batch. Questions may join between steps (a server's
    new requests join the next wave). `isolate`: a batch whose call fails is answered again
    question by question, and only the questions that still fail stop (with `Run.error`):
    one bad request must not fail a server's others."""

    def __init__(self, source: Source, isolate: bool = False):
        self.source, self.isolate = source, isolate
        self.runs: list[Run] = []

    def start(self, method: Any, question: Question) -> Run:
        """Begin solving `question` by `method` (its generator runs to its first request)."""
        run = Run(method, question, method.solve(question), Answer(question, Choice.of(None, 0.0)), time.monotonic())
        self._resume(run, None)
        if not run.done:
            self.runs.append(run)
        return run

    @property
    def busy(self) -> bool:
        return bool(self.runs)

    def step(self) -> list[Run]:
        """Answer the oldest kind of waiting request for every question waiting on it (a
        `Gather` only once every question of its method waits on one); returns the runs
        that moved, finished ones dropped from the engine."""
        kinds = [k for k in (ReadQuestion, Draw, Extend, ReadSteps) if any(isinstance(r.request, k) for r in self.runs)]
        if kinds:
            batch = [r for r in self.runs if isinstance(r.request, kinds[0])]
            self._answer_all(kinds[0], batch)
        else:  # every question waits on a decision over all questions of its method
            batch = []
            for method in {id(r.method): r.method for r in self.runs}.values():
                group = [r for r in self.runs if r.method is method]
                for run, share in zip(group, method.gather([g.value for g in _requests(group, Gather)])):
                    self._resume(run, share)
                batch += group
        self.runs = [r for r in self.runs if not r.done]
        return batch

    def drop(self, run: Run) -> None:
        """Stop solving a question (its client left): it gets nothing more."""
        self.runs = [r for r in self.runs if r is not run]

    def _answer_all(self, kind: type, batch: list[Run]) -> None:
        try:
            results = _answer(kind, batch, self.source)
        except Exception as err:
            if not self.isolate:
                raise
            if len(batch) == 1:
                batch[0].fail(err)
                return
            for run in batch:
                self._answer_all(kind, [run])
            return
        for run, result in zip(batch, results):
            self._resume(run, result)

    def _resume(self, run: Run, value: Any) -> None:
        """Send `value` to the run's generator; a method that raises fails its run alone
        when isolating."""
        try:
            run.send(value)
        except Exception as err:
            if not self.isolate:
                raise
            run.fail(err)


def run_method(method: Any, questions: Sequence[Question], source: Source) -> list[Answer]:
    """`method` on every question, their requests batched kind by kind; answers in order."""
    engine = Engine(source)
    runs = [engine.start(method, q) for q in questions]
    while engine.busy:
        engine.step()
    return [r.answer for r in runs]


def _answer(kind: type, batch: list[Run], source: Source) -> list[Any]:
    """The results of one kind of request for every question in `batch`, its spend counted."""
    if kind is ReadQuestion:
        return _read_questions(batch, source)
    if kind is Draw:
        return _draw(batch, source)
    if kind is Extend:
        return _extend(batch, source)
    return _read_steps(batch, source)


R = TypeVar("R")


def _requests(batch: Sequence[Run], kind: type[R]) -> list[R]:
    """Each run's waiting request, which the engine batched as one `kind`."""
    requests = []
    for run in batch:
        if not isinstance(run.request, kind):
            raise TypeError(f"a {kind.__name__} batch holds a {type(run.request).__name__}")
        requests.append(run.request)
    return requests


def _read_questions(batch: list[Run], source: Source) -> list[QuestionReading]:
    readings = source.read_questions([r.question for r in batch])
    for run, reading in zip(batch, readings):
        run.answer.prm_tokens += reading.prm_tokens
    return readings


def _draw(batch: list[Run], source: Source) -> list[list[Scored]]:
    requests = _requests(batch, Draw)
    drawn = source.draw([(r.question, len(r.answer.samples), request) for r, request in zip(batch, requests)])
    for run, request, samples in zip(batch, requests, drawn):
        answer = run.answer
        answer.samples.extend(samples)
        answer.n_samples += len(samples)
        answer.generated_tokens += sum(s.generated_tokens for s in samples)
        answer.prompt_tokens += sum(s.prompt_tokens for s in samples)
        answer.prm_tokens += sum(s.prm_tokens for s in samples)
        answer.waves.append({"draw": request.count, **request.note})
    return drawn


def _extend(batch: list[Run], source: Source) -> list[list[list[Sample]]]:
    requests = _requests(batch, Extend)
    extended = source.extend([(r.question, request) for r, request in zip(batch, requests)])
    for run, request, groups in zip(batch, requests, extended):
        samples = [s for group in groups for s in group]
        run.answer.n_samples += len(samples)
        run.answer.generated_tokens += sum(s.generated_tokens for s in samples)
        run.answer.prompt_tokens += sum(s.prompt_tokens for s in samples)
        run.answer.waves.append({"extend": list(request.counts), **request.note})
    return extended


def _read_steps(batch: list[Run], source: Source) -> list[list[StepScores]]:
    requests = _requests(batch, ReadSteps)
    read = source.read_steps([(r.question, request) for r, request in zip(batch, requests)])
    for run, readings in zip(batch, read):
        run.answer.prm_tokens += sum(x.tokens for x in readings)
    return read
