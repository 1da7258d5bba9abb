"""Particle filtering (Puri et al. 2025, "A probabilistic inference approach to inference-time
scaling of LLMs using particle-based Monte Carlo methods"; the main method of its_hub).

`particles` partial solutions advance one step at a time, one continuation each. After each
step the PRM reads every particle at its last step; particles the policy finished, or whose
text states the answer, are kept as they are; the unfinished ones are resampled with
replacement, as many as there were, each drawn with probability softmax(score / T) of its PRM
score at the latest step (Puri et al.'s weight: the reward of the latest step; softmax so that
a score of 0 still leaves a particle a chance). T, `resample_temperature` (not the policy's
sampling temperature), sets how greedy the filter is: small is nearly argmax, large nearly
uniform. Unreadable particles score `UNREAD` (0). The draw is seeded by (question id,
round), so a run is reproducible. It stops when every particle is finished; round
`max_rounds` continues the rest to the end.

The answer is the finished particle with the highest PRM score (one that states an answer
before one that does not); its confidence is that score, in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ias.errors import UserError
from ias.methods import register_method
from ias.methods.base import Choice, Extend, Question, ReadSteps, Solving, unit
from ias.methods.steps import Partial, grow, read
from ias.policy.base import derive_seed
from ias.scaling.select import select


@register_method("particle-filtering")
@dataclass(frozen=True)
class ParticleFiltering:
    """`particles` partial solutions advanced step by step and resampled by their PRM scores."""

    particles: int = 8
    resample_temperature: float = 1.0
    max_rounds: int = 16

    def __post_init__(self) -> None:
        for key in ("particles", "max_rounds"):
            if getattr(self, key) < 1:
                raise UserError(f"--{key.replace('_', '-')} must be >= 1, got {getattr(self, key)}")
        if not (math.isfinite(self.resample_temperature) and self.resample_temperature > 0):
            raise UserError(f"--resample-temperature must be a positive number, got {self.resample_temperature}")

    def solve(self, question: Question) -> Solving:
        alive = [Partial() for _ in range(self.particles)]
        finished: list[Partial] = []
        note: dict = {"round": 0}
        for round_ in range(self.max_rounds):
            groups = yield Extend(
                tuple(p.steps for p in alive),
                (1,) * len(alive),
                key=("particles", round_),
                to_end=round_ == self.max_rounds - 1,
                note=note,
            )
            grown = [grow(question, parent, sample) for parent, group in zip(alive, groups) for sample in group]
            read(grown, (yield ReadSteps(tuple(p.steps for p in grown))), lower=False)
            finished += [p for p in grown if p.finished]
            open_ = [p for p in grown if not p.finished]
            if not open_:
                break
            parents = self.resample([p.stat for p in open_], derive_seed("particle-filtering", question.id, round_))
            alive = [open_[i] for i in parents]
            note = {
                "round": round_ + 1,
                "finished": len(finished),
                "scores": [round(p.stat, 6) for p in open_],
                "parents": parents,
            }
        i = select([p.answer for p in finished], [p.stat for p in finished], "best")
        if i is None:
            return Choice.of(None, 0.0)
        return Choice(finished[i].text, finished[i].answer, unit(finished[i].score))

    def resample(self, scores: list[float], seed: int) -> list[int]:
        """As many draws with replacement as there are `scores`, index i drawn with
        probability softmax(scores / resample_temperature)[i]; sorted, so the log reads easily."""
        logits = np.asarray(scores, dtype=float) / self.resample_temperature
        weights = np.exp(logits - logits.max())
        picks = np.random.default_rng(seed).choice(
            len(scores), size=len(scores), replace=True, p=weights / weights.sum()
        )
        return sorted(int(i) for i in picks)
