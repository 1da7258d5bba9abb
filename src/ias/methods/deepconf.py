"""DeepConf-style online early exit (Fu et al. 2025), live: later samples stop while written."""

from __future__ import annotations

from dataclasses import dataclass

from ias.errors import UserError
from ias.methods import register_method
from ias.methods.base import Draw, Question, Solving, choose
from ias.scaling.budget import deepconf_threshold, lowest_window_confidence


@register_method("deepconf")
@dataclass(frozen=True)
class DeepConf:
    """`warmup` samples set a threshold: the lowest windowed token confidence that would
    have kept the top `keep` share of them. The other `n_max - warmup` samples are drawn
    with the live exit at that threshold (a sample whose `window`-token mean log-probability
    falls below it stops there: its later tokens are never generated) and left out of the
    majority vote. No PRM is read; the confidence is the winning answer's share of votes."""

    warmup: int = 16
    keep: float = 0.9
    window: int = 8
    n_max: int = 64

    def __post_init__(self) -> None:
        if not 1 <= self.warmup <= self.n_max or self.window < 1 or not 0 < self.keep <= 1:
            raise UserError(
                f"need 1 <= warmup <= n_max, window >= 1, 0 < keep <= 1; got {self.warmup}, "
                f"{self.n_max}, {self.window}, {self.keep}"
            )

    def solve(self, question: Question) -> Solving:
        warm = yield Draw(self.warmup, read=False, logprobs=True)
        lowest = [lowest_window_confidence(s.logprobs, self.window) if s.logprobs else 0.0 for s in warm]
        threshold = deepconf_threshold(lowest, self.keep)
        kept = list(warm)
        if self.n_max > self.warmup:
            later = yield Draw(
                self.n_max - self.warmup,
                read=False,
                logprobs=True,
                exit_below=threshold,
                exit_window=self.window,
                note={"threshold": round(threshold, 6)},
            )
            kept += [s for s in later if s.finish_reason != "exit"]
        return choose(kept, "majority")
