"""`ias-adaptive`: sequential, selector-aware, calibrated (see `ias.scaling.budget.adaptive_wave`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ias.methods import register_method
from ias.methods.base import Choice, Draw, Question, ReadQuestion, Scored, Solving, question_estimate, sample_score
from ias.scaling.adaptive import ConfidenceMap
from ias.scaling.budget import AdaptiveSettings, adaptive_wave
from ias.scaling.select import best_by_prefix


@register_method("ias-adaptive")
@dataclass(frozen=True)
class IASAdaptive:
    """Samples arrive in waves; after each, the calibrated PRM reads the finished samples
    and the question stops once the best-scored answer's calibrated chance of being right
    reaches `target`, or once one more sample's expected gain is below `price` per token,
    or at `n_max`. `confidence_map` turns a chosen sample's calibrated score into its chance
    of being right (fitted on a tuning pool by `ias eval --tune-split`; identity if None).
    `calibrated=False`: the same rule on the PRM's raw scores, with no map."""

    target: float = 0.9
    price: float = 0.0005
    wave: int = 1
    prior: float = 2.0
    n_max: int = 64
    calibrated: bool = True
    confidence_map: ConfidenceMap | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        self.settings  # refuses bad knobs

    @property
    def settings(self) -> AdaptiveSettings:
        return AdaptiveSettings(self.target, self.price, self.wave, self.prior)

    def solve(self, question: Question) -> Solving:
        mapping = self.confidence_map if self.calibrated and self.confidence_map else ConfidenceMap()
        estimate = question_estimate((yield ReadQuestion()), "median", self.calibrated)
        samples: list[Scored] = []
        confidence, chance_sum = 0.0, 0.0
        more = adaptive_wave(estimate, 0, 0.0, 0.0, 0.0, self.settings, self.n_max)
        note = {"estimate": round(estimate, 6)}
        while more:
            samples += yield Draw(more, note=note)
            scores = [sample_score(s, self.calibrated) for s in samples]
            chosen = best_by_prefix([s.answer for s in samples], scores)[-1]
            chances = mapping(scores)
            confidence = float(mapping([scores[chosen]])[0])
            chance_sum = float(np.cumsum(chances)[-1])  # summed as the tuning replay sums
            mean_tokens = sum(s.generated_tokens for s in samples) / len(samples)
            more = adaptive_wave(estimate, len(samples), confidence, chance_sum, mean_tokens, self.settings, self.n_max)
            note = {"confidence": round(confidence, 6), "chance_sum": round(chance_sum, 6)}
        return Choice.of(samples[chosen], confidence)
