"""The post-hoc baselines (`posthoc.py`'s maps of the score) as calibrators: one calibrated
value per reading, reported as the level 0.5, and no hidden states read."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ias.calibration.calibrator import Calibrator, MapCalibrator, Prefixes
from ias.calibration.posthoc import HistogramBinning, IsotonicRegression, PosthocMap, TemperatureScaling
from ias.prm.base import PRM, ReadablePRM


class PosthocCalibrator(MapCalibrator):
    """A global map of the PRM's score (`kind`), blind to the question; saved in `calibration.json`."""

    quantiles = False
    kind: ClassVar[type[PosthocMap]]

    def __init__(self, method: str, posthoc: PosthocMap):
        super().__init__(method, (0.5,))
        self.posthoc = posthoc

    @classmethod
    def fit(
        cls,
        method: str,
        prm: ReadablePRM,
        data: Prefixes,
        levels: tuple[float, ...],
        seed: int,
        settings: dict[str, Any],
    ) -> Calibrator:
        return cls(method, cls.kind().fit(data.score, data.target))

    def map(self, score: np.ndarray, hidden: np.ndarray | None) -> np.ndarray:
        return np.asarray(self.posthoc.predict(score), dtype=np.float32)[:, None]

    def save(self, folder: Path) -> dict[str, Any]:
        return {"posthoc": self.posthoc.to_dict()}

    @classmethod
    def load(cls, folder: Path, info: dict[str, Any], prm: PRM | None) -> Calibrator:
        return cls(info["method"], cls.kind.from_dict(info["posthoc"]))


class TemperatureCalibrator(PosthocCalibrator):
    kind = TemperatureScaling


class IsotonicCalibrator(PosthocCalibrator):
    kind = IsotonicRegression


class HistogramCalibrator(PosthocCalibrator):
    kind = HistogramBinning
