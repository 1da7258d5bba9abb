"""Adaptive-Consistency (Aggarwal et al. 2023): one sample at a time until the vote is sure."""

from __future__ import annotations

from dataclasses import dataclass

from ias.errors import UserError
from ias.methods import register_method
from ias.methods.base import Draw, Question, Scored, Solving, choose
from ias.scaling.budget import adaptive_consistency_stop
from ias.scaling.select import answer_key


@register_method("adaptive-consistency")
@dataclass(frozen=True)
class AdaptiveConsistency:
    """Draw one sample at a time (no PRM read) until the Beta/Dirichlet posterior says the
    leading answer is the mode with chance `threshold`, or `n_max`; majority vote."""

    threshold: float = 0.95
    n_max: int = 64

    def __post_init__(self) -> None:
        if not 0 < self.threshold <= 1 or self.n_max < 1:
            raise UserError(f"need 0 < threshold <= 1 and n_max >= 1, got {self.threshold}, {self.n_max}")

    def solve(self, question: Question) -> Solving:
        samples: list[Scored] = []
        answers: list[str | None] = []
        while len(samples) < self.n_max:
            samples += yield Draw(1, read=False)
            answers.append(answer_key(samples[-1].answer))
            if adaptive_consistency_stop(answers, self.threshold):
                break
        return choose(samples, "majority")
