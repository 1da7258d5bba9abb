"""What a test-time scaling method is: a per-question generator of requests, written once.

A method is a frozen dataclass of its settings with a `solve(question)` generator. It yields
*requests* (read the question, draw k more samples, continue partial solutions, read steps)
and receives their results; it returns a `Choice`. It never calls a model: an `Engine`
(`ias.methods.engine`) answers the requests of many questions at once, from a live policy
and PRM (`ias solve`, `ias ask`, `ias serve`) or from a shared pool of samples (`ias eval`),
so a method's live run and its evaluation cannot differ.

Sample j of a question is the same sample whoever asks for it and in whatever wave (the
backends seed it by (run seed, question id, j)), so a method that draws 3 samples and then
5 more gets exactly the first 8 samples of the question.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Sequence, Union

from ias.scaling.budget import UNREAD
from ias.scaling.select import answer_key, select
from ias.types import Problem


@dataclass(frozen=True)
class Question:
    """One question as a method sees it: the problem (the method must not read its
    reference answer) and the task's answer extractor (for partial solutions)."""

    problem: Problem
    extract: Callable[[str], str | None]

    @property
    def id(self) -> str:
        return self.problem.id


@dataclass(frozen=True)
class Scored:
    """One finished sample and the PRM's reading of it. `score`: the (calibrated) PRM score
    at its last step, None if unread or unreadable; `lower`: the lowest calibrated quantile
    there; `raw_score`: the PRM's own score before calibration. `correct` is known in
    evaluation (a pool graded against references) and in runs over a dataset; methods
    never read it."""

    index: int
    text: str
    answer: str | None
    score: float | None
    lower: float | None
    raw_score: float | None
    generated_tokens: int
    prm_tokens: int
    finish_reason: str
    logprobs: tuple[float, ...] | None = None
    correct: bool | None = None
    prompt_tokens: int = 0
    step_scores: tuple[float, ...] | None = None  # the (calibrated) score at every step
    quantiles: tuple[float, ...] | None = None  # the calibrated quantiles at the last step, lowest first


@dataclass(frozen=True)
class QuestionReading:
    """The PRM on the question alone (t = 0): its score (the calibrated median with a
    calibrator), its lowest calibrated quantile and its raw score; None where unreadable."""

    score: float | None
    lower: float | None
    raw_score: float | None
    prm_tokens: int


# --- requests ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadQuestion:
    """Read the PRM on the question alone; answered with a `QuestionReading`."""


@dataclass(frozen=True)
class Draw:
    """`count` more whole samples of the question (its next indices); answered with a list
    of `Scored`. `read`: have the PRM read them (methods that only vote do not pay for it);
    `logprobs`: keep each token's log-probability; `exit_below` (DeepConf): a sample stops
    at the first full window of `exit_window` tokens whose mean log-probability is below it.
    `note`: why this wave, kept in the answer's wave log."""

    count: int
    read: bool = True
    logprobs: bool = False
    exit_below: float | None = None
    exit_window: int = 16
    note: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Extend:
    """Continue partial solutions (step-level search): `counts[b]` continuations of the
    steps `prefixes[b]`, each ending at the end of its next step unless `to_end`.
    Continuation j of prefix b is sample j of the seed (run seed, question id, *key, b);
    answered with one list of `ias.types.Sample` per prefix."""

    prefixes: tuple[tuple[str, ...], ...]
    counts: tuple[int, ...]
    key: tuple = ()
    to_end: bool = False
    note: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ReadSteps:
    """Read the PRM on partial or whole solutions (each a tuple of steps); answered with one
    `ias.prm.base.StepScores` per solution."""

    solutions: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Gather:
    """A decision over every question solved together (a fleet budget): the engine waits
    until each unfinished question has sent one, then answers each with its share of the
    method's `gather([values])`."""

    value: Any


Request = Union[ReadQuestion, Draw, Extend, ReadSteps, Gather]


@dataclass(frozen=True)
class Choice:
    """A method's answer: the chosen solution's text and extracted answer, and the
    calibrated chance that it is right (`confidence`), with the calibrated interval of the
    chosen sample's own chance where a calibrator gives quantiles. `correct` is carried through from a
    graded pool sample (evaluation), None otherwise."""

    text: str | None
    answer: str | None
    confidence: float
    correct: bool | None = None
    interval: tuple[float, float] | None = None  # the chosen sample's lowest and highest calibrated quantile

    @classmethod
    def of(cls, sample: Scored | None, confidence: float) -> Choice:
        if sample is None:
            return cls(None, None, 0.0, False)
        q = sample.quantiles
        return cls(sample.text, sample.answer, confidence, sample.correct, (q[0], q[-1]) if q else None)


Solving = Generator[Request, Any, Choice]


# --- helpers the methods share -----------------------------------------------------------


def unit(x: float | None) -> float:
    """A score as a probability: unread (None, -inf, NaN) is 0, the rest clipped to [0, 1]."""
    return min(max(x, 0.0), 1.0) if x is not None and not math.isnan(x) else 0.0


def sample_score(sample: Scored, calibrated: bool = True) -> float:
    """The score a method ranks a sample by: calibrated, or the PRM's own; -inf if unread."""
    value = sample.score if calibrated else sample.raw_score
    return float("-inf") if value is None or math.isnan(value) else value


def question_estimate(reading: QuestionReading, estimate: str = "median", calibrated: bool = True) -> float:
    """The question's chance of success by the PRM: the calibrated `lower` quantile or the
    `median` (the score); `calibrated=False`: the raw score. Unreadable: `UNREAD` (0), so a
    budget from it is the largest, never the smallest."""
    if not calibrated:
        value = reading.raw_score
    elif estimate == "lower" and reading.lower is not None:
        value = reading.lower
    else:
        value = reading.score
    return UNREAD if value is None or math.isnan(value) else float(value)


def choose(samples: Sequence[Scored], how: str, calibrated: bool = True) -> Choice:
    """The sample chosen by a selection rule (best, majority, weighted) and its confidence:
    the chosen sample's calibrated score under a PRM rule, the winning answer's share of the
    votes under majority (no PRM was read)."""
    i = select([s.answer for s in samples], [sample_score(s, calibrated) for s in samples], how)
    if i is None:
        return Choice.of(None, 0.0)
    chosen = samples[i]
    if how == "majority":
        key = answer_key(chosen.answer)
        votes = sum(answer_key(s.answer) == key for s in samples) if key is not None else 0
        return Choice.of(chosen, votes / len(samples))
    return Choice.of(chosen, unit(sample_score(chosen, calibrated)))
