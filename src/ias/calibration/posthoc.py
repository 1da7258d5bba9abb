"""The post-hoc baselines of SPEC §3: global maps of a PRM score, blind to the instance.

Each learns a monotone (or binned) function `r -> calibrated r` from (score, Monte-Carlo
target) pairs. They are what the paper beats: one map for every question cannot tell an
easy question scored 0.8 from a hard one scored 0.8. Each is a small class with
`fit(r, p) -> self`, `predict(r)`, and `to_dict()` / `from_dict()` for JSON.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np

from ias.calibration.metrics import ArrayLike, _arrays

_EPS = 1e-6


def _logit(r: np.ndarray) -> np.ndarray:
    r = np.clip(r, _EPS, 1 - _EPS)
    return np.log(r) - np.log1p(-r)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * z))  # no overflow for large |z|


def _check_range(name: str, a: np.ndarray) -> None:
    if (a < 0).any() or (a > 1).any():
        raise ValueError(f"{name} must lie in [0, 1]")


class _Fitted:
    method = ""

    def _need_fit(self) -> None:
        if not self.fitted:
            raise self._unfitted()

    def _unfitted(self) -> RuntimeError:
        return RuntimeError(f"{type(self).__name__} is not fitted; call fit(r, p) first")

    @property
    def fitted(self) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError


class TemperatureScaling(_Fitted):
    """`sigmoid(logit(r) / T)` with one temperature T minimising cross-entropy to the targets.

    The binary cross-entropy against soft targets p~ is convex in `a = 1 / T` (the logit is
    linear in `a`), so a golden-section search over a bounded interval of `a` finds the
    optimum without scipy. T > 1 softens over-confident scores toward 0.5; T < 1 sharpens.
    """

    method = "temperature"

    def __init__(self, temperature: float | None = None, bounds: tuple[float, float] = (0.01, 100.0)):
        self.temperature = temperature
        self.bounds = bounds

    @property
    def fitted(self) -> bool:
        return self.temperature is not None

    def fit(self, r: ArrayLike, p: ArrayLike, tol: float = 1e-9) -> TemperatureScaling:
        r, p = _arrays(("r", r), ("p", p))
        _check_range("r", r)
        _check_range("p", p)
        z = _logit(r)

        def loss(a: float) -> float:
            s = a * z  # BCE(sigmoid(s), p) = softplus(s) - p * s, written stably
            return float(np.mean(np.logaddexp(0.0, s) - p * s))

        lo, hi = 1.0 / self.bounds[1], 1.0 / self.bounds[0]
        ratio = (math.sqrt(5) - 1) / 2
        x1, x2 = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        f1, f2 = loss(x1), loss(x2)
        while hi - lo > tol * max(1.0, abs(lo)):
            if f1 <= f2:
                hi, x2, f2 = x2, x1, f1
                x1 = hi - ratio * (hi - lo)
                f1 = loss(x1)
            else:
                lo, x1, f1 = x1, x2, f2
                x2 = lo + ratio * (hi - lo)
                f2 = loss(x2)
        self.temperature = float(1.0 / ((lo + hi) / 2))
        return self

    def predict(self, r: ArrayLike) -> np.ndarray:
        self._need_fit()
        (r,) = _arrays(("r", r))
        return _sigmoid(_logit(r) / self.temperature)

    def to_dict(self) -> dict[str, Any]:
        self._need_fit()
        return {"method": self.method, "temperature": self.temperature, "bounds": list(self.bounds)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TemperatureScaling:
        return cls(float(data["temperature"]), tuple(data.get("bounds", (0.01, 100.0))))


def pav(y: ArrayLike, w: ArrayLike | None = None) -> np.ndarray:
    """Pool adjacent violators: the non-decreasing sequence closest to `y` in weighted least squares.

    Scans left to right keeping a stack of blocks (weighted mean, weight, length); a new
    value that is below the last block's mean is pooled with it, and pooling repeats while
    the merged block is below the one before. O(n).
    """
    (y,) = _arrays(("y", y))
    w = np.ones_like(y) if w is None else _arrays(("y", y), ("w", w))[1]
    if (w <= 0).any():
        raise ValueError("weights must be > 0")
    means: list[float] = []
    weights: list[float] = []
    lengths: list[int] = []
    for value, weight in zip(y.tolist(), w.tolist()):
        means.append(value)
        weights.append(weight)
        lengths.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            m2, w2, n2 = means.pop(), weights.pop(), lengths.pop()
            total = weights[-1] + w2
            means[-1] = (means[-1] * weights[-1] + m2 * w2) / total
            weights[-1] = total
            lengths[-1] += n2
    return np.repeat(np.array(means), lengths)


class IsotonicRegression(_Fitted):
    """The best non-decreasing map of the score in least squares, by pool-adjacent-violators.

    Pairs are sorted by score; equal scores are pooled first (a function gives them one
    value). Between the fitted scores the map interpolates linearly; outside them it is
    constant (the end values).
    """

    method = "isotonic"

    def __init__(self, x: ArrayLike | None = None, y: ArrayLike | None = None):
        self.x = None if x is None else np.asarray(x, dtype=float)
        self.y = None if y is None else np.asarray(y, dtype=float)

    @property
    def fitted(self) -> bool:
        return self.x is not None

    def fit(self, r: ArrayLike, p: ArrayLike) -> IsotonicRegression:
        r, p = _arrays(("r", r), ("p", p))
        xs, inverse, counts = np.unique(r, return_inverse=True, return_counts=True)
        sums = np.bincount(inverse, weights=p, minlength=xs.size)
        fitted = pav(sums / counts, counts.astype(float))
        # Keep only the ends of each constant run: the same function, far fewer points.
        keep = np.ones(xs.size, dtype=bool)
        if xs.size > 2:
            same_prev = np.r_[False, fitted[1:] == fitted[:-1]]
            same_next = np.r_[fitted[:-1] == fitted[1:], False]
            keep = ~(same_prev & same_next)
        self.x, self.y = xs[keep], fitted[keep]
        return self

    def _points(self) -> tuple[np.ndarray, np.ndarray]:
        if self.x is None or self.y is None:
            raise self._unfitted()
        return self.x, self.y

    def predict(self, r: ArrayLike) -> np.ndarray:
        x, y = self._points()
        (r,) = _arrays(("r", r))
        return np.interp(r, x, y)

    def to_dict(self) -> dict[str, Any]:
        x, y = self._points()
        return {"method": self.method, "x": x.tolist(), "y": y.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IsotonicRegression:
        return cls(data["x"], data["y"])


class HistogramBinning(_Fitted):
    """Equal-width bins of the score over [0, 1]; a score maps to its bin's mean target.

    A bin that saw no calibration pair keeps the identity (the score is returned as is)
    rather than inventing a value.
    """

    method = "histogram"

    def __init__(self, bins: int = 10, values: list[float | None] | None = None):
        if bins < 1:
            raise ValueError(f"bins must be >= 1, got {bins}")
        self.bins = bins
        self.values = values

    @property
    def fitted(self) -> bool:
        return self.values is not None

    def fit(self, r: ArrayLike, p: ArrayLike) -> HistogramBinning:
        from ias.calibration.metrics import reliability

        rel = reliability(r, p, self.bins)
        self.values = [None if c == 0 else float(m) for c, m in zip(rel.counts, rel.mean_target)]
        return self

    def _values(self) -> list[float | None]:
        if self.values is None:
            raise self._unfitted()
        return self.values

    def predict(self, r: ArrayLike) -> np.ndarray:
        values = self._values()
        (r,) = _arrays(("r", r))
        _check_range("r", r)
        idx = np.minimum((r * self.bins).astype(int), self.bins - 1)
        table = np.array([np.nan if v is None else v for v in values])
        out = table[idx]
        return np.where(np.isnan(out), r, out)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "bins": self.bins, "values": list(self._values())}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HistogramBinning:
        return cls(int(data["bins"]), list(data["values"]))


class PosthocMap(Protocol):
    """What every baseline offers: fit a map of the score, apply it, and round-trip it through JSON."""

    method: str

    def fit(self, r: ArrayLike, p: ArrayLike) -> PosthocMap: ...

    def predict(self, r: ArrayLike) -> np.ndarray: ...

    def to_dict(self) -> dict[str, Any]: ...

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PosthocMap: ...


BASELINES: dict[str, type[PosthocMap]] = {
    "temperature": TemperatureScaling,
    "isotonic": IsotonicRegression,
    "histogram": HistogramBinning,
}


def baseline_from_dict(data: dict[str, Any]) -> PosthocMap:
    """A fitted baseline from its `to_dict()`, whatever its method."""
    method = data.get("method")
    if method not in BASELINES:
        raise ValueError(f"unknown post-hoc method {method!r}; known: {', '.join(BASELINES)}")
    return BASELINES[method].from_dict(data)
