"""Sequential IAS: waves until the finished samples' calibrated chance that one is right
reaches the coverage."""

from __future__ import annotations

from dataclasses import dataclass

from ias.methods import register_method
from ias.methods.base import Draw, Question, ReadQuestion, Scored, Solving, choose, question_estimate
from ias.scaling.budget import chance_any_correct, n_ias


@register_method("ias-seq")
@dataclass(frozen=True)
class SequentialIAS:
    """The first wave has the one-shot size N_IAS(p_lo); each later wave is what the
    question's lower bound says is still missing: with m the chance that every finished
    sample is wrong, k more samples at p_lo reach C once m (1 - p_lo)^k <= 1 - C, i.e.
    k = N_IAS(p_lo, 1 - (1 - C) / m). Stops at `n_max`."""

    coverage: float = 0.99
    n_max: int = 64

    def __post_init__(self) -> None:
        n_ias(0.5, self.coverage, 1, self.n_max)

    def solve(self, question: Question) -> Solving:
        p_lo = question_estimate((yield ReadQuestion()), "lower")
        n = n_ias(p_lo, self.coverage, 1, self.n_max)
        samples: list[Scored] = list((yield Draw(n, note={"p": round(p_lo, 6)})))
        while len(samples) < self.n_max:
            reached = chance_any_correct([_estimate(s) for s in samples])
            if reached >= self.coverage:
                break
            still = 1.0 - (1.0 - self.coverage) / (1.0 - reached)
            more = min(n_ias(p_lo, still, 1, self.n_max), self.n_max - len(samples))
            samples += yield Draw(more, note={"reached": round(reached, 6)})
        return choose(samples, "best")


def _estimate(sample: Scored) -> float:
    """A finished sample's calibrated chance of being right: its lowest quantile at the last step."""
    if sample.lower is not None:
        return sample.lower
    return max(0.0, sample.score) if sample.score is not None else 0.0
