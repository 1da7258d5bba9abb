"""The fleet budget: the samples IAS would spend, shared out over the questions solved together."""

from __future__ import annotations

from dataclasses import dataclass

from ias.methods import register_method
from ias.methods.base import Draw, Gather, Question, ReadQuestion, Solving, choose, question_estimate
from ias.scaling.budget import fleet_allocation, n_ias


@register_method("fleet")
@dataclass(frozen=True)
class Fleet:
    """The total that IAS Best-of-N spends at `coverage` on the questions solved together
    (a batch of `ias solve`, all problems of `ias eval`), split to maximise the expected
    number solved (`fleet_allocation`, from each question's calibrated lower bound)."""

    coverage: float = 0.99
    n_min: int = 1
    n_max: int = 64

    def __post_init__(self) -> None:
        n_ias(0.5, self.coverage, self.n_min, self.n_max)

    def solve(self, question: Question) -> Solving:
        p = question_estimate((yield ReadQuestion()), "lower")
        n = yield Gather(p)
        samples = yield Draw(n, note={"p": round(p, 6)})
        return choose(samples, "best")

    def gather(self, lower_bounds: list[float]) -> list[int]:
        total = sum(n_ias(p, self.coverage, self.n_min, self.n_max) for p in lower_bounds)
        return fleet_allocation(lower_bounds, total, self.n_min, self.n_max)
