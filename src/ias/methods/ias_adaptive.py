"""`ias-adaptive`: sequential, selector-aware, calibrated (see `ias.scaling.budget.adaptive_wave`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ias.methods import register_method
from ias.methods.base import Choice, Draw, Question, ReadQuestion, Scored, Solving, question_estimate, sample_score, unit
from ias.calibration.posthoc import IsotonicRegression
from ias.scaling.budget import AdaptiveSettings, adaptive_wave


class ConfidenceMap:
    """The chance that a best-scored answer is right, from its calibrated score: the chosen
    sample is the top one of several, so its own score runs high; an isotonic map fitted on
    a tuning pool's choices (never the evaluated problems', `ias eval --tune-split`)
    corrects that. Unfitted, the score itself."""

    def __init__(self, fitted: IsotonicRegression | None = None):
        self.fitted = fitted

    def __call__(self, scores: Sequence[float]) -> np.ndarray:
        values = np.asarray([unit(x) for x in scores], dtype=float)
        return self.fitted.predict(values) if self.fitted else values

    def to_dict(self) -> dict:
        return self.fitted.to_dict() if self.fitted else {"method": "identity"}

    @classmethod
    def from_dict(cls, data: dict) -> ConfidenceMap:
        return cls(None if data.get("method") == "identity" else IsotonicRegression.from_dict(data))


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
        chances: list[float] = []  # each sample's own chance of being right
        chance_sum, tokens = 0.0, 0
        chosen, top = 0, (False, float("-inf"))  # the best-scored so far, as `best_by_prefix` ranks
        more = adaptive_wave(estimate, 0, 0.0, 0.0, 0.0, self.settings, self.n_max)
        note = {"estimate": round(estimate, 6)}
        while more:
            wave = yield Draw(more, note=note)
            scores = [sample_score(s, self.calibrated) for s in wave]
            for sample, score, chance in zip(wave, scores, mapping(scores).tolist()):
                key = (sample.answer is not None, score)
                if not samples or key > top:
                    chosen, top = len(samples), key
                samples.append(sample)
                chances.append(chance)
                chance_sum += chance  # in sample order, as the tuning replay's cumulative sum
                tokens += sample.generated_tokens
            confidence = chances[chosen]
            more = adaptive_wave(estimate, len(samples), confidence, chance_sum, tokens / len(samples), self.settings,
                                 self.n_max)
            note = {"confidence": round(confidence, 6), "chance_sum": round(chance_sum, 6)}
        return Choice.of(samples[chosen], confidence)
