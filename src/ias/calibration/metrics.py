"""Calibration metrics (SPEC §4) over predictions `r` and Monte-Carlo targets `p` (p~).

All are plain numpy functions of arrays of equal length. The targets are *fractions*
(p~ = Z / N_MC), not 0/1 labels: a PRM is calibrated when its score matches the
probability that the policy succeeds from the prefix, and p~ is an unbiased estimate of
it, so the squared error against p~ (Brier) ranks predictors the same way as against the
true probability, up to a constant (the targets' own sampling variance).

NaN or infinite inputs raise `ValueError`: a NaN silently dropped or averaged would report a
calibration that was never measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, NamedTuple, Sequence

import numpy as np

ArrayLike = Sequence[float] | np.ndarray


def _arrays(*pairs: tuple[str, ArrayLike]) -> list[np.ndarray]:
    """Validated float arrays: 1-D, same length, non-empty, finite."""
    out = []
    for name, values in pairs:
        a = np.asarray(values, dtype=float)
        if a.ndim != 1:
            a = a.reshape(-1)
        bad = ~np.isfinite(a)
        if bad.any():
            kind = "NaN" if np.isnan(a).any() else "infinite"
            raise ValueError(
                f"{name} holds {int(bad.sum())} {kind} value(s) of {a.size}; "
                "drop or fix those pairs before measuring calibration"
            )
        out.append(a)
    sizes = {a.size for a in out}
    if len(sizes) != 1:
        raise ValueError(
            f"{', '.join(n for n, _ in pairs)} have different lengths: {', '.join(str(a.size) for a in out)}"
        )
    if not out[0].size:
        raise ValueError("no (prediction, target) pairs to measure")
    return out


def brier(r: ArrayLike, p: ArrayLike) -> float:
    """Mean squared error `mean (r - p)^2`: the paper's headline calibration number.

    For a quantile PRM pass the median quantile as `r`.
    """
    r, p = _arrays(("r", r), ("p", p))
    return float(np.mean((r - p) ** 2))


def overestimation(r: ArrayLike, p: ArrayLike) -> float:
    """`mean max(r - p, 0)^2`: the over-confident part of the Brier score.

    Over-estimation is the harmful direction for instance-adaptive scaling: a PRM that
    thinks a hard question is easy gets it too few samples. Brier = this + the
    under-estimation part.
    """
    r, p = _arrays(("r", r), ("p", p))
    return float(np.mean(np.maximum(r - p, 0.0) ** 2))


def _bin_index(r: np.ndarray, bins: int) -> np.ndarray:
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    if (r < 0).any() or (r > 1).any():
        raise ValueError("predictions must lie in [0, 1] to be binned")
    return np.minimum((r * bins).astype(int), bins - 1)  # 1.0 falls in the last bin


def ece(r: ArrayLike, p: ArrayLike, bins: int = 10) -> float:
    """Expected calibration error with `bins` equal-width bins of the prediction over [0, 1].

    `sum_b (n_b / N) * |mean r in b - mean p in b|`: how far, on average, the predicted
    success rate of a group of prefixes is from their observed rate. Equal-width bins
    (not equal-mass) so that numbers are comparable with the paper's and across methods.
    """
    r, p = _arrays(("r", r), ("p", p))
    idx = _bin_index(r, bins)
    sum_r = np.bincount(idx, weights=r, minlength=bins)
    sum_p = np.bincount(idx, weights=p, minlength=bins)
    return float(np.abs(sum_r - sum_p).sum() / r.size)  # n_b * |mean r - mean p| = |sum r - sum p|


def coverage(q: ArrayLike, p: ArrayLike, resolution: float = 0.0, inclusive: bool = False) -> float:
    """Share of targets below the quantile prediction `q`; a calibrated `beta`-quantile has `beta`.

    Targets are fractions on a grid (k / N_MC, and exact 0/1 at t = T), so many sit exactly
    at 0 or 1, and a sigmoid quantile is never exactly there: `q = 0.002` on a target of 0
    *is* the right 0.1-quantile of a prefix that almost always fails. So the comparison is
    made at the targets' `resolution` (half a grid step): a target counts as below when
    `p < q - resolution`, and with `inclusive=True` when `p <= q + resolution` (ties too).
    For targets with atoms a right quantile has `coverage <= beta <= inclusive coverage`;
    `1 - coverage(q_lo, p)` is the share with `p >= q_lo`, what a lower bound promises.
    """
    q, p = _arrays(("q", q), ("p", p))
    return float(np.mean(p <= q + resolution if inclusive else p < q - resolution))


class Reliability(NamedTuple):
    """A reliability diagram's data: per equal-width bin of the prediction."""

    centres: np.ndarray
    mean_prediction: np.ndarray  # NaN for an empty bin
    mean_target: np.ndarray  # NaN for an empty bin
    counts: np.ndarray

    def to_dict(self) -> dict[str, list]:
        """JSON-ready: empty bins hold None."""

        def plain(a: np.ndarray) -> list:
            return [None if not np.isfinite(x) else round(float(x), 6) for x in a]

        return {
            "centres": plain(self.centres),
            "mean_prediction": plain(self.mean_prediction),
            "mean_target": plain(self.mean_target),
            "counts": [int(c) for c in self.counts],
        }


def reliability(r: ArrayLike, p: ArrayLike, bins: int = 10) -> Reliability:
    """Per bin of the prediction: its centre, the mean prediction, the mean target, the count.

    A calibrated predictor's bins lie on the diagonal (mean target = mean prediction);
    bins below it are over-estimation.
    """
    r, p = _arrays(("r", r), ("p", p))
    idx = _bin_index(r, bins)
    counts = np.bincount(idx, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_r = np.bincount(idx, weights=r, minlength=bins) / counts
        mean_p = np.bincount(idx, weights=p, minlength=bins) / counts
    centres = (np.arange(bins) + 0.5) / bins
    return Reliability(centres, np.where(counts > 0, mean_r, np.nan), np.where(counts > 0, mean_p, np.nan), counts)


def by_step(
    metric: Callable[..., float], r: ArrayLike, p: ArrayLike, t: ArrayLike, cap: int | None = None, **kwargs
) -> dict[int, float]:
    """`metric(r, p)` within each step index `t` (sorted by t); `cap` lumps every t >= cap together.

    Calibration is usually worst at t = 0 (the question alone: pure difficulty estimation)
    and improves as the prefix reveals mistakes; a global number hides that.
    """
    r, p, t = _arrays(("r", r), ("p", p), ("t", t))
    steps = t.astype(int)
    if (steps != t).any() or (steps < 0).any():
        raise ValueError("step indices t must be whole numbers >= 0")
    if cap is not None:
        steps = np.minimum(steps, cap)
    return {int(s): metric(r[steps == s], p[steps == s], **kwargs) for s in np.unique(steps)}


def reliability_plot(
    path: str | Path,
    predictions: ArrayLike | Mapping[str, ArrayLike],
    p: ArrayLike,
    bins: int = 10,
    title: str = "Reliability",
) -> Path:
    """Write a reliability diagram PNG: mean target against mean prediction per bin.

    `predictions` is one array or a mapping name -> array (several methods on the same
    targets). A lower panel shows how many pairs each bin holds, so that a wild point
    backed by three prefixes is read as such.
    """
    from ias.figures import new_figure, save_figure

    series = dict(predictions) if isinstance(predictions, Mapping) else {"prediction": predictions}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = new_figure(figsize=(5.5, 6.5))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="calibrated")
    width = 1.0 / bins / (len(series) + 1)
    for k, (name, r) in enumerate(series.items()):
        rel = reliability(r, p, bins)
        filled = rel.counts > 0
        label = f"{name} (Brier {brier(r, p):.4f}, ECE {ece(r, p, bins):.4f})"
        top.plot(rel.mean_prediction[filled], rel.mean_target[filled], marker="o", label=label)
        bottom.bar(rel.centres - 0.5 / bins + (k + 0.5) * width, rel.counts, width=width, align="edge")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("mean target p~")
    top.set_title(title)
    top.legend(fontsize=7, loc="upper left")
    bottom.set_xlabel("mean prediction")
    bottom.set_ylabel("pairs")
    save_figure(fig, path)
    return path
