"""Fixed Best-of-N: `n` samples, one answer by a selection rule."""

from __future__ import annotations

from dataclasses import dataclass

from ias.errors import UserError
from ias.methods import register_method
from ias.methods.base import Draw, Question, Solving, choose
from ias.scaling.select import SELECTIONS


@register_method("bon")
@dataclass(frozen=True)
class BestOfN:
    """`n` samples; the answer by `selection`: best PRM score, majority vote (no PRM read:
    self-consistency) or PRM-weighted vote."""

    n: int = 16
    selection: str = "best"

    def __post_init__(self) -> None:
        if self.n < 1:
            raise UserError(f"--n must be >= 1, got {self.n}")
        if self.selection not in SELECTIONS:
            raise UserError(f"unknown selection '{self.selection}'; known: {', '.join(SELECTIONS)}")

    def solve(self, question: Question) -> Solving:
        samples = yield Draw(self.n, read=self.selection != "majority")
        return choose(samples, self.selection)
