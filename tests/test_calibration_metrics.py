"""Calibration metrics against hand-computed values and brute force; the post-hoc baselines."""

import itertools
import json

import numpy as np
import pytest

from ias.calibration.metrics import brier, by_step, coverage, ece, overestimation, reliability, reliability_plot
from ias.calibration.posthoc import (
    HistogramBinning,
    IsotonicRegression,
    TemperatureScaling,
    baseline_from_dict,
    pav,
)


def test_brier_and_overestimation_by_hand():
    r, p = [0.2, 0.8, 0.5], [0.0, 1.0, 0.25]
    assert brier(r, p) == pytest.approx((0.04 + 0.04 + 0.0625) / 3)
    assert overestimation(r, p) == pytest.approx((0.04 + 0.0 + 0.0625) / 3)  # only r > p counts
    assert overestimation([0.1], [0.9]) == 0.0
    # Brier splits into its over- and under-estimation parts.
    rng = np.random.default_rng(0)
    r, p = rng.random(50), rng.random(50)
    assert brier(r, p) == pytest.approx(overestimation(r, p) + overestimation(p, r))


def test_ece_by_hand_and_by_brute_force():
    r, p = [0.05, 0.15, 0.12, 0.95], [0.0, 0.5, 0.0, 1.0]
    # bin 0: |0.05 - 0|, bin 1: 2 * |0.135 - 0.25|, bin 9: |0.95 - 1|
    assert ece(r, p) == pytest.approx((0.05 + 0.23 + 0.05) / 4)
    assert ece([1.0, 0.95], [1.0, 1.0], bins=10) == pytest.approx(0.025)  # 1.0 is in the last bin
    rng = np.random.default_rng(1)
    r, p = rng.random(200), rng.random(200)
    for bins in (1, 3, 10):
        total = 0.0
        for b in range(bins):
            inside = [(x, y) for x, y in zip(r, p) if (min(int(x * bins), bins - 1)) == b]
            if inside:
                xs, ys = zip(*inside)
                total += len(inside) * abs(sum(xs) / len(xs) - sum(ys) / len(ys))
        assert ece(r, p, bins) == pytest.approx(total / len(r))
    assert ece(r, r) == 0.0


def test_coverage_counts_targets_strictly_below():
    q, p = [0.5, 0.5, 0.5, 0.5], [0.2, 0.5, 0.7, 0.1]
    assert coverage(q, p) == 0.5
    assert coverage(q, p, inclusive=True) == 0.75


def test_coverage_at_the_targets_resolution_treats_a_quantile_at_an_atom_as_a_tie():
    # A 0.1-quantile of 0.003 on prefixes that always fail (target exactly 0) is right, not
    # "above every target"; half a grid step of 1/8 decides what is a tie.
    q, p = [0.003, 0.003, 0.3, 0.3], [0.0, 0.0, 0.125, 0.375]
    assert coverage(q, p) == 0.75
    assert coverage(q, p, resolution=1 / 16) == 0.25
    assert coverage(q, p, resolution=1 / 16, inclusive=True) == 0.75


def test_reliability_bins_and_empty_bins():
    rel = reliability([0.05, 0.15, 0.12, 0.95], [0.0, 0.5, 0.0, 1.0], bins=10)
    assert rel.counts.tolist() == [1, 2, 0, 0, 0, 0, 0, 0, 0, 1]
    assert rel.centres[0] == pytest.approx(0.05) and rel.centres[-1] == pytest.approx(0.95)
    assert rel.mean_prediction[1] == pytest.approx(0.135) and rel.mean_target[1] == pytest.approx(0.25)
    assert np.isnan(rel.mean_target[2])
    data = rel.to_dict()
    assert data["mean_target"][2] is None and data["counts"][1] == 2
    json.dumps(data, allow_nan=False)


def test_by_step_groups_and_caps():
    r, p, t = [0.9, 0.5, 0.2, 0.4], [0.0, 0.5, 0.2, 0.0], [0, 1, 1, 3]
    assert by_step(brier, r, p, t) == pytest.approx({0: 0.81, 1: 0.0, 3: 0.16})
    assert by_step(brier, r, p, t, cap=1) == pytest.approx({0: 0.81, 1: 0.16 / 3})
    assert by_step(ece, r, p, t, bins=5)[0] == pytest.approx(0.9)


@pytest.mark.parametrize("fn", [brier, overestimation, ece, coverage])
def test_nan_and_mismatched_inputs_are_refused(fn):
    with pytest.raises(ValueError, match="NaN"):
        fn([0.1, float("nan")], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        fn([0.1, 0.2], [float("nan"), 0.2])
    with pytest.raises(ValueError, match="different lengths"):
        fn([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="no .* pairs"):
        fn([], [])


def test_reliability_plot_writes_a_png(tmp_path):
    rng = np.random.default_rng(2)
    p = rng.random(100)
    path = reliability_plot(tmp_path / "fig" / "rel.png", {"raw": np.clip(p + 0.2, 0, 1), "cal": p}, p, bins=5)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---- post-hoc baselines ----


def _isotonic_brute(y, w):
    """The weighted isotonic fit by its min-max formula: max over j <= i of min over k >= i of avg(j..k)."""
    n = len(y)

    def avg(j, k):
        return sum(w[i] * y[i] for i in range(j, k + 1)) / sum(w[j : k + 1])

    return [max(min(avg(j, k) for k in range(i, n)) for j in range(i + 1)) for i in range(n)]


def test_pav_by_hand_and_against_the_least_squares_monotone_fit():
    assert pav([1, 3, 2, 4]).tolist() == [1, 2.5, 2.5, 4]
    assert pav([3, 2, 1]).tolist() == [2, 2, 2]
    assert pav([0.5]).tolist() == [0.5]
    rng = np.random.default_rng(3)
    for n in range(1, 8):
        for _ in range(20):
            y, w = rng.random(n), rng.integers(1, 4, n).astype(float)
            fit = pav(y, w)
            assert (np.diff(fit) >= -1e-12).all()
            assert fit == pytest.approx(_isotonic_brute(y.tolist(), w.tolist()))
    # Exhaustive check on a grid: no non-decreasing sequence of values in {0, .25, ..., 1} beats PAV.
    y = np.array([0.75, 0.0, 1.0, 0.25, 0.5])
    best = min(
        sum((a - b) ** 2 for a, b in zip(seq, y))
        for seq in itertools.product(np.linspace(0, 1, 5), repeat=len(y))
        if all(x <= z for x, z in zip(seq, seq[1:]))
    )
    assert ((pav(y) - y) ** 2).sum() <= best + 1e-12


def test_isotonic_regression_pools_ties_and_interpolates():
    r = [0.1, 0.2, 0.2, 0.6, 0.9]
    p = [0.5, 0.0, 0.4, 0.3, 1.0]
    iso = IsotonicRegression().fit(r, p)
    # r=0.2 pooled to 0.2; PAV over (0.5 w1, 0.2 w2, 0.3 w1, 1.0 w1) -> 0.3 for the first three
    assert iso.predict([0.1, 0.2, 0.6, 0.9]) == pytest.approx([0.3, 0.3, 0.3, 1.0])
    assert iso.predict([0.0, 0.75, 1.0]) == pytest.approx([0.3, 0.65, 1.0])  # clamped ends, linear between
    grid = np.linspace(0, 1, 101)
    assert (np.diff(iso.predict(grid)) >= 0).all()
    again = baseline_from_dict(json.loads(json.dumps(iso.to_dict())))
    assert again.predict(grid) == pytest.approx(iso.predict(grid))


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(4)
    z = rng.normal(0, 3, 20000)
    r = 1 / (1 + np.exp(-z))
    truth = 1 / (1 + np.exp(-z / 2.5))
    assert TemperatureScaling().fit(r, truth).temperature == pytest.approx(2.5, rel=1e-3)
    noisy = rng.binomial(8, truth) / 8  # Monte-Carlo targets, as in the rollout store
    ts = TemperatureScaling().fit(r, noisy)
    assert ts.temperature == pytest.approx(2.5, rel=0.05)
    assert brier(ts.predict(r), noisy) < brier(r, noisy)
    again = baseline_from_dict(json.loads(json.dumps(ts.to_dict())))
    assert again.predict([0.3, 0.9]) == pytest.approx(ts.predict([0.3, 0.9]))
    with pytest.raises(RuntimeError, match="not fitted"):
        TemperatureScaling().predict([0.5])


def test_histogram_binning_means_and_identity_for_empty_bins():
    hb = HistogramBinning(bins=4).fit([0.1, 0.2, 0.6, 1.0], [0.0, 0.5, 0.3, 0.9])
    assert hb.values[0] == pytest.approx(0.25) and hb.values[1] is None
    assert hb.values[2:] == pytest.approx([0.3, 0.9])
    assert hb.predict([0.05, 0.3, 0.7, 0.8]) == pytest.approx([0.25, 0.3, 0.3, 0.9])  # 0.3: empty bin
    again = baseline_from_dict(json.loads(json.dumps(hb.to_dict())))
    assert again.predict([0.3, 0.55]) == pytest.approx([0.3, 0.3])
    with pytest.raises(ValueError, match="NaN"):
        HistogramBinning().fit([0.1, float("nan")], [0.0, 1.0])


def test_plots_leave_the_callers_matplotlib_backend_alone(tmp_path):
    """A notebook user's backend stays theirs: plots are drawn without pyplot."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, matplotlib; matplotlib.use('svg')\n"
        "from ias.calibration.metrics import reliability_plot\n"
        f"reliability_plot({str(tmp_path / 'rel.png')!r}, np.linspace(0, 1, 20), np.linspace(0, 1, 20))\n"
        "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["svg", "False"]
    assert (tmp_path / "rel.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
