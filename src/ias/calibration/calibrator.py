"""The one interface every calibration method implements, and the PRM wrapper of a map calibrator.

A calibrator turns a PRM's readings of rollout prefixes into quantiles of the policy's success
probability. `ias calibrate` fits one (`fit`), measures it (`predict`), writes its folder
(`save`, next to the `calibration.json` it returns fields for); `calibrated_prm` loads it
(`load`) and lets it change how a PRM scores (`wrap`). What differs between methods (whether
it reads hidden states, changes the PRM, takes settings, predicts several levels) is a class
attribute, so nothing outside a method's own module asks which method it is. A new method is a
subclass plus one line in `calibration/registry.py`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from ias.calibration.store import TargetRow
from ias.errors import UserError
from ias.prm.base import PRM, Item, ReadablePRM, StepScores, require_readable

LEVELS = (0.1, 0.5, 0.9)


def median_column(levels: Sequence[float]) -> int:
    """The column of the level nearest 0.5: the point estimate every metric and ranking uses."""
    return min(range(len(levels)), key=lambda i: abs(levels[i] - 0.5))


def check_levels(levels: Sequence[float]) -> tuple[float, ...]:
    """The levels as floats, or a UserError: output column i is read as level i, so the
    levels must be given increasing (sorted quantiles would be mislabelled otherwise)."""
    values = [float(b) for b in levels]
    if not values or values != sorted(values) or not all(0 < b < 1 for b in values) or len(set(values)) != len(values):
        raise UserError(
            f"quantile levels (--levels) must be distinct, increasing and inside (0, 1), e.g. 0.1,0.5,0.9; got {values}"
        )
    return tuple(values)


def lowered(q: np.ndarray, shift: float) -> np.ndarray:
    """`q` with the conformal shift subtracted from its lowest quantile (clipped at 0)."""
    if not shift:
        return q
    q = q.copy()
    q[:, 0] = np.clip(q[:, 0] - shift, 0.0, 1.0)
    return q


@dataclass(frozen=True)
class Prefixes:
    """Rollout rows the PRM could read, with its readings: what a calibrator fits and predicts on."""

    rows: list[TargetRow]
    score: np.ndarray  # [N] the PRM's probability at each row's tag
    hidden: np.ndarray | None  # [N, width] its last hidden state there, when read

    @property
    def target(self) -> np.ndarray:
        return np.array([r.p for r in self.rows], dtype=np.float32)

    def take(self, idx: Sequence[int]) -> Prefixes:
        """The rows at `idx`, in that order."""
        picked = list(idx)
        return Prefixes(
            [self.rows[i] for i in picked], self.score[picked], None if self.hidden is None else self.hidden[picked]
        )


class Calibrator(ABC):
    """A fitted calibration method: quantiles of success at `levels` (one level, 0.5, for a
    point map), lowered by the conformal `shift` where one was fitted."""

    needs_hidden: ClassVar[bool] = False  # reads the PRM's hidden state at each tag
    changes_prm: ClassVar[bool] = False  # `wrap` gives an adapted PRM, not a map after the PRM
    quantiles: ClassVar[bool] = True  # predicts several levels, so a conformal shift applies
    defaults: ClassVar[dict[str, Any]] = {}  # its settings (`--lora KEY=VALUE`) and their defaults

    def __init__(self, method: str, levels: Sequence[float]):
        self.method = method
        self.levels = tuple(levels)
        self._shift = 0.0

    @property
    def shift(self) -> float:
        """Conformal: subtracted from the lowest quantile (kept in `calibration.json`)."""
        return self._shift

    @shift.setter
    def shift(self, value: float) -> None:
        self._shift = float(value)

    @property
    def median_index(self) -> int:
        return median_column(self.levels)

    @classmethod
    def check_settings(cls, method: str, given: dict[str, Any] | None) -> dict[str, Any]:
        """The method's settings with `given` over its defaults; unknown ones are one line."""
        given = given or {}
        unknown = sorted(set(given) - set(cls.defaults))
        if unknown and not cls.defaults:
            raise UserError(f"calibration method '{method}' takes no settings (--lora), got {', '.join(unknown)}")
        if unknown:
            raise UserError(f"unknown {method} setting(s) {', '.join(unknown)}; known: {', '.join(cls.defaults)}")
        return {**cls.defaults, **given}

    @classmethod
    @abstractmethod
    def fit(
        cls,
        method: str,
        prm: ReadablePRM,
        data: Prefixes,
        levels: tuple[float, ...],
        seed: int,
        settings: dict[str, Any],
    ) -> Calibrator:
        """Fitted on `data` (the PRM's readings of the fit rows) at `levels`, with `settings`
        from `check_settings`."""

    @abstractmethod
    def predict(self, data: Prefixes) -> np.ndarray:
        """[rows, levels] quantiles of the rows' success, the conformal shift applied."""

    @abstractmethod
    def save(self, folder: Path) -> dict[str, Any]:
        """Writes its files into `folder`; returns its own `calibration.json` fields."""

    @classmethod
    @abstractmethod
    def load(cls, folder: Path, info: dict[str, Any], prm: PRM | None) -> Calibrator:
        """The calibrator saved in `folder` (`info`: its `calibration.json`) for `prm`
        (None only for a calibrator that does not change the PRM)."""

    @abstractmethod
    def wrap(self, prm: PRM) -> PRM:
        """`prm` calibrated: its scores are medians and its readings carry every level."""


class MapCalibrator(Calibrator):
    """A calibrator that maps the PRM's reading (score, hidden state at the tag) after the PRM."""

    @abstractmethod
    def map(self, score: np.ndarray, hidden: np.ndarray | None) -> np.ndarray:
        """[N, levels] quantiles of N readings, before the conformal shift."""

    def predict_scores(self, score: np.ndarray, hidden: np.ndarray | None) -> np.ndarray:
        """[N, levels] quantiles of N readings, the conformal shift applied."""
        return lowered(self.map(score, hidden), self.shift)

    def predict(self, data: Prefixes) -> np.ndarray:
        return self.predict_scores(data.score, data.hidden)

    def wrap(self, prm: PRM) -> PRM:
        return CalibratedPRM(prm, self)


def require_hidden(hidden: np.ndarray | None, method: str) -> np.ndarray:
    """The hidden states a calibrator reads; their absence is a bug, not the user's input."""
    if hidden is None:
        raise RuntimeError(f"the {method} calibrator reads hidden states, and was given none")
    return hidden


class CalibratedPRM:
    """A PRM whose step scores are calibrated: `scores` hold the median, `quantiles` all levels."""

    def __init__(self, prm: PRM, calibrator: MapCalibrator):
        if calibrator.needs_hidden:
            require_readable(prm, f"a {calibrator.method} calibrator")
        self.prm = prm
        self.calibrator = calibrator
        self.name = f"{prm.name}+{calibrator.method}"

    def score(self, items: Sequence[Item], hidden: bool = False) -> list[StepScores]:
        if hidden or self.calibrator.needs_hidden:
            readings = require_readable(self.prm, "scoring with hidden states").score(items, hidden=True)
        else:
            readings = self.prm.score(items)
        for reading in readings:
            if reading.skipped or not reading.scores:
                continue
            q = self.calibrator.predict_scores(np.asarray(reading.scores, dtype=np.float32), reading.hidden)
            reading.raw_scores = reading.scores
            reading.quantiles = q.tolist()
            reading.scores = q[:, self.calibrator.median_index].tolist()
        return readings
