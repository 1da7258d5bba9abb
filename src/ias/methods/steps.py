"""Partial solutions for the step-level methods (beam search, particle filtering).

A partial solution grows one policy continuation at a time and is read by the PRM at its
last step. Both searches decide when a solution is finished the same way (`grow`), and read
a PRM's reading the same way (`last_score`, `statistic`), so they differ only in what they
keep and extend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ias.methods.base import Question
from ias.prm.base import StepScores
from ias.scaling.budget import UNREAD
from ias.types import STEP_DELIMITER, Sample, split_steps


@dataclass
class Partial:
    """One partial (or, once `finished`, whole) solution: its steps, and after a PRM read its
    ranking statistic `stat` and its PRM score at the last step (`score`, None if unread).
    `text` and `answer` are set once it is finished."""

    steps: tuple[str, ...] = ()
    finished: bool = False
    text: str = ""
    answer: str | None = None
    stat: float = UNREAD
    score: float | None = None


def grow(question: Question, parent: Partial, sample: Sample) -> Partial:
    """The partial solution a continuation of `parent` makes. It is finished when the policy
    ended it (anything but stopping at the step delimiter) or when its text states the
    final answer (models that write on after `\\boxed{}` would otherwise run every round);
    otherwise it is one step longer. The text is read as the policy saw it (untrusted: only
    the question's extractor reads it)."""
    steps = (*parent.steps, *split_steps(sample.text))
    text = "".join(step + STEP_DELIMITER for step in parent.steps) + sample.text
    answer = question.extract(text)
    if sample.finish_reason == "stop" and sample.stop == STEP_DELIMITER and answer is None:
        return Partial(steps)
    return Partial(steps, True, text, answer)


def last_score(reading: StepScores) -> float | None:
    """The PRM's (calibrated median's, with a calibrator) score at the last step; None when
    the solution could not be read."""
    if reading.skipped or not reading.scores:
        return None
    value = reading.scores[-1]
    return None if value is None or math.isnan(value) else float(value)


def statistic(reading: StepScores, lower: bool) -> float:
    """The one number a search ranks, counts and chooses by: the lowest calibrated quantile
    at the last step (`lower`, when the PRM is calibrated) or the score there, clipped to
    [0, 1]; an unreadable solution counts as hopeless (`UNREAD`)."""
    if reading.skipped or not reading.scores:
        return UNREAD
    value = reading.quantiles[-1][0] if lower and reading.quantiles else reading.scores[-1]
    return UNREAD if value is None or math.isnan(value) else min(1.0, max(0.0, float(value)))


def read(partials: list[Partial], readings: list[StepScores], lower: bool) -> None:
    """Store each PRM reading on its partial solution."""
    for partial, reading in zip(partials, readings):
        partial.stat = statistic(reading, lower)
        partial.score = last_score(reading)
