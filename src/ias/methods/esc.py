"""Early-stopping self-consistency (Li et al. 2024): windows until one agrees."""

from __future__ import annotations

from dataclasses import dataclass

from ias.errors import UserError
from ias.methods import register_method
from ias.methods.base import Draw, Question, Scored, Solving, choose
from ias.scaling.budget import esc_window_stop
from ias.scaling.select import answer_key


@register_method("esc")
@dataclass(frozen=True)
class EarlyStoppingSC:
    """Windows of `window` samples (no PRM read) until one window agrees on one answer,
    at most `n_max` samples in all; majority vote over every sample drawn."""

    window: int = 5
    n_max: int = 64

    def __post_init__(self) -> None:
        if self.window < 1 or self.n_max < 1:
            raise UserError(f"need window >= 1 and n_max >= 1, got {self.window}, {self.n_max}")

    def solve(self, question: Question) -> Solving:
        samples: list[Scored] = []
        while len(samples) < self.n_max:
            window = yield Draw(min(self.window, self.n_max - len(samples)), read=False)
            samples += window
            if len(window) == self.window and esc_window_stop([answer_key(s.answer) for s in window]):
                break
        return choose(samples, "majority")
