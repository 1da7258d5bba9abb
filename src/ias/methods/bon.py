"""Fixed Best-of-N: `n` samples, one answer by a selection rule."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ias.errors import UserError
from ias.methods import register_method
from ias.methods.base import Draw, Question, Scored, Solving, choose
from ias.scaling.select import AGGREGATIONS, SELECTIONS, aggregate


@register_method("bon")
@dataclass(frozen=True)
class BestOfN:
    """`n` samples; the answer by `selection`: best PRM score, majority vote (no PRM read:
    self-consistency) or PRM-weighted vote; a sample's score is its step scores by
    `aggregation` (last, min, prod, mean)."""

    n: int = 16
    selection: str = "best"
    aggregation: str = "last"

    def __post_init__(self) -> None:
        if self.n < 1:
            raise UserError(f"--n must be >= 1, got {self.n}")
        if self.selection not in SELECTIONS:
            raise UserError(f"unknown selection '{self.selection}'; known: {', '.join(SELECTIONS)}")
        if self.aggregation not in AGGREGATIONS:
            raise UserError(f"unknown aggregation '{self.aggregation}'; known: {', '.join(AGGREGATIONS)}")

    def solve(self, question: Question) -> Solving:
        samples = yield Draw(self.n, read=self.selection != "majority")
        if self.aggregation != "last":
            samples = [replace(s, score=aggregated(s, self.aggregation)) for s in samples]
        return choose(samples, self.selection)


def aggregated(sample: Scored, how: str) -> float | None:
    """A sample's score by `how` over its step scores (`last`: its score as read; None: unread)."""
    if how == "last" or sample.step_scores is None:
        return sample.score
    value = aggregate(sample.step_scores, how)
    return None if value == float("-inf") else value
