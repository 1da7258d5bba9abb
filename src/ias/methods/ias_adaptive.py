"""`ias-adaptive`: sequential, selector-aware, calibrated (see `ias.scaling.budget.adaptive_wave`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ias.calibration.posthoc import IsotonicRegression
from ias.methods import register_method
from ias.methods.base import (
    Choice,
    Draw,
    Question,
    ReadQuestion,
    Scored,
    Solving,
    question_estimate,
    sample_score,
    unit,
)
from ias.scaling.budget import AdaptiveSettings, adaptive_wave

#: The chosen answer's confidence is mapped per band of samples drawn: 1, 2-3, 4-7, 8-15,
#: 16-31, and 32 or more (the last band).
COUNT_BANDS = 6


def count_band(drawn: int) -> int:
    """The band of a choice made among `drawn` samples (floor of log2, the last band capped)."""
    return min(max(int(drawn), 1).bit_length() - 1, COUNT_BANDS - 1)


class ConfidenceMap:
    """The chance that a best-scored answer is right, from its calibrated score: the chosen
    sample is the top one of several, so its own score runs high, and the more samples it
    was chosen from, the higher; isotonic maps fitted on a tuning pool's choices (never the
    evaluated problems', `ias eval --tune-split`) correct that. `fitted`: one map over every
    choice, which also reads a single sample's own chance; `by_band`: one map per band of
    samples drawn (`count_band`) for the chosen answer (`chosen`), `fitted` where a band has
    none. Unfitted, the score itself."""

    def __init__(self, fitted: IsotonicRegression | None = None, by_band: dict[int, IsotonicRegression] | None = None):
        self.fitted = fitted
        self.by_band = dict(by_band or {})

    def __call__(self, scores: Sequence[float] | np.ndarray) -> np.ndarray:
        values = np.asarray([unit(x) for x in scores], dtype=float)
        return self.fitted.predict(values) if self.fitted else values

    def chosen(self, scores: Sequence[float] | np.ndarray, drawn: Sequence[int] | np.ndarray) -> np.ndarray:
        """The chance that each chosen answer is right, from its score and how many samples
        it was chosen among (`drawn`)."""
        values = self(scores)
        bands = np.asarray([count_band(n) for n in drawn], dtype=int)
        for band, fitted in self.by_band.items():
            here = bands == band
            if here.any():
                values[here] = fitted.predict(np.asarray([unit(x) for x in scores], dtype=float)[here])
        return values

    def to_dict(self) -> dict:
        if not self.fitted:
            return {"method": "identity"}
        bands = {str(b): f.to_dict() for b, f in sorted(self.by_band.items())}
        return {**self.fitted.to_dict(), **({"by_band": bands} if bands else {})}  # a map of one band reads as before

    @classmethod
    def from_dict(cls, data: dict) -> ConfidenceMap:
        if data.get("method") == "identity":
            return cls()
        return cls(
            IsotonicRegression.from_dict(data),
            {int(b): IsotonicRegression.from_dict(f) for b, f in (data.get("by_band") or {}).items()},
        )


@register_method("ias-adaptive")
@dataclass(frozen=True)
class IASAdaptive:
    """Samples arrive in waves; after each, the calibrated PRM reads the finished samples
    and the question stops once the best-scored answer's calibrated chance of being right
    reaches `target`, or once one more sample's expected gain is below `price` per token,
    or at `n_max`. `confidence_map` turns a chosen sample's calibrated score, and how many
    samples it was chosen among, into its chance of being right (fitted on a tuning pool by
    `ias eval --tune-split`; identity if None).
    `calibrated=False`: the same rule on the PRM's raw scores, with no map. `growth` (a
    latency setting, not tuned): later waves hold `growth - 1` times the samples a question
    has (at least `wave`), so a question needing n samples waits for about log2(n) waves at
    2 (1: `wave` samples a wave, the fewest tokens and the most waves)."""

    target: float = 0.9
    price: float = 0.0005
    wave: int = 1
    prior: float = 2.0
    growth: float = 2.0
    n_max: int = 64
    calibrated: bool = True
    confidence_map: ConfidenceMap | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        self.settings  # refuses bad knobs

    @property
    def settings(self) -> AdaptiveSettings:
        return AdaptiveSettings(self.target, self.price, self.wave, self.prior, self.growth)

    def solve(self, question: Question) -> Solving:
        mapping = self.confidence_map if self.calibrated and self.confidence_map else ConfidenceMap()
        estimate = question_estimate((yield ReadQuestion()), "median", self.calibrated)
        samples: list[Scored] = []
        scores: list[float] = []
        chance_sum, tokens = 0.0, 0
        chosen, top = 0, (False, float("-inf"))  # the best-scored so far, as `best_by_prefix` ranks
        more = adaptive_wave(estimate, 0, 0.0, 0.0, 0.0, self.settings, self.n_max)
        note = {"estimate": round(estimate, 6)}
        while more:
            wave = yield Draw(more, note=note)
            read = [sample_score(s, self.calibrated) for s in wave]
            for sample, score, chance in zip(wave, read, mapping(read).tolist()):
                key = (sample.answer is not None, score)
                if not samples or key > top:
                    chosen, top = len(samples), key
                samples.append(sample)
                scores.append(score)
                chance_sum += chance  # each sample's own chance, in sample order, as the replay's cumulative sum
                tokens += sample.generated_tokens
            confidence = float(mapping.chosen([scores[chosen]], [len(samples)])[0])
            more = adaptive_wave(
                estimate, len(samples), confidence, chance_sum, tokens / len(samples), self.settings, self.n_max
            )
            note = {"confidence": round(confidence, 6), "chance_sum": round(chance_sum, 6)}
        return Choice.of(samples[chosen], confidence)
