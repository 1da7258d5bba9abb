"""Budget and stopping rules: SPEC examples, brute force and hand-worked cases."""

import itertools
import math

import numpy as np
import pytest

from ias.confidence import live_exit
from ias.errors import UserError
from ias.scaling.budget import (
    AdaptiveSettings,
    adaptive_consistency_stop,
    adaptive_wave,
    chance_any_correct,
    deepconf_threshold,
    esc_window_stop,
    fleet_allocation,
    ias_of_k,
    ias_of_m,
    leading_answer_probability,
    lowest_window_confidence,
    n_ias,
    oracle_allocation,
    sequential_should_stop,
    windowed_confidence,
)

# --- n_ias ---------------------------------------------------------------------------


def test_n_ias_spec_examples():
    assert n_ias(0.5) == 7
    assert n_ias(0.3) == 13
    assert n_ias(0.1) == 44
    assert n_ias(0.05, n_max=1000) == 90
    assert n_ias(0.05) == 64  # the default cap


def test_n_ias_clipping_and_extremes():
    assert n_ias(0.9, n_min=4) == 4
    assert n_ias(0.01, n_max=20) == 20
    assert n_ias(1.0, n_min=3) == 3
    assert n_ias(0.0, n_max=50) == 50
    assert n_ias(1.5, n_min=2) == 2  # out-of-range estimates are clamped, not rejected
    assert n_ias(-0.2, n_max=9) == 9
    assert n_ias(np.float32(0.5)) == 7


@pytest.mark.parametrize(
    "kwargs",
    [
        {"p": float("nan")},
        {"p": 0.5, "coverage": 1.0},
        {"p": 0.5, "coverage": 0.0},
        {"p": 0.5, "coverage": float("nan")},
        {"p": 0.5, "n_min": 0},
        {"p": 0.5, "n_min": 5, "n_max": 4},
        {"p": 0.5, "n_max": 8.0},
        {"p": 0.5, "eps": 0.0},
    ],
)
def test_n_ias_rejects_bad_arguments(kwargs):
    with pytest.raises(UserError):
        n_ias(**kwargs)


def _smallest_n(p: float, coverage: float, n_max: int) -> int:
    n = 1
    while 1.0 - (1.0 - p) ** n < coverage and n < n_max:
        n += 1
    return n


def test_n_ias_matches_brute_force():
    for coverage in (0.5, 0.8, 0.9, 0.99, 0.999):
        for p in np.linspace(0.001, 0.999, 499):
            p = float(p)
            assert n_ias(p, coverage, n_max=10**5) == _smallest_n(p, coverage, 10**5), (p, coverage)


def test_n_ias_whole_number_ratios():
    # log(1 - C) / log(1 - p) is a whole number here, up to rounding of the logs
    for k in range(1, 30):
        assert n_ias(0.5, 1 - 0.5**k, n_max=100) == k
    assert n_ias(0.9, 0.99) == _smallest_n(0.9, 0.99, 64)
    assert n_ias(0.75, 0.9375) == 2
    for p, coverage in [(0.9, 0.99), (0.9, 0.999), (0.8, 0.96), (0.99, 0.9999)]:
        assert n_ias(p, coverage) == _smallest_n(p, coverage, 64)
    # coverage one float step above what k samples reach: the log ratio still rounds to k, the answer is k + 1
    for p in (0.01, 0.08, 0.3):
        for k in range(1, 8):
            coverage = math.nextafter(1 - (1 - p) ** k, 1.0)
            assert n_ias(p, coverage) == _smallest_n(p, coverage, 64) == k + 1, (p, k)


# --- sequential IAS --------------------------------------------------------------------


def test_chance_any_correct_and_sequential_stop():
    assert chance_any_correct([]) == 0.0
    assert chance_any_correct([0.5, 0.5]) == pytest.approx(0.75)
    assert chance_any_correct([0.2, 0.5, 1.0]) == 1.0
    assert chance_any_correct([0.3, 1.7, -0.5]) == 1.0  # clamped
    assert not sequential_should_stop([0.5] * 6, 0.99)  # 1 - 1/64 < 0.99
    assert sequential_should_stop([0.5] * 7, 0.99)  # 1 - 1/128 >= 0.99, as n_ias(0.5) = 7
    with pytest.raises(UserError):
        chance_any_correct([0.5, float("nan")])
    with pytest.raises(UserError):
        sequential_should_stop([0.5], 1.2)


# --- fleet allocation ------------------------------------------------------------------


def _objective(ps, counts):
    return sum(1.0 - (1.0 - p) ** n for p, n in zip(ps, counts))


def _exhaustive_best(ps, budget, n_min, n_max):
    best = -1.0
    for counts in itertools.product(range(n_min, n_max + 1), repeat=len(ps)):
        if sum(counts) <= budget:
            best = max(best, _objective(ps, counts))
    return best


def test_fleet_allocation_is_optimal_against_exhaustive_search():
    rng = np.random.default_rng(7)
    cases = [rng.uniform(0, 1, 3).tolist() for _ in range(8)]
    cases += [[0.0, 0.5, 1.0], [0.5, 0.5, 0.5], [0.9, 0.05, 0.3], [0.01, 0.02, 0.99]]
    checked = 0
    for ps in cases:
        for n_min, n_max in [(0, 9), (1, 9), (1, 3), (2, 4)]:
            for budget in range(n_min * 3, 10):
                counts = fleet_allocation(ps, budget, n_min, n_max)
                assert sum(counts) <= budget
                assert all(n_min <= n <= n_max for n in counts)
                assert _objective(ps, counts) == pytest.approx(_exhaustive_best(ps, budget, n_min, n_max), abs=1e-12)
                checked += 1
    assert checked > 300


def test_fleet_allocation_hand_cases():
    assert fleet_allocation([0.5, 0.5, 0.5], 4) == [2, 1, 1]  # ties go to the lower index
    assert fleet_allocation([0.5, 0.5, 0.5], 5) == [2, 2, 1]
    assert fleet_allocation([0.2, 0.9], 4) == [3, 1]  # the easy one is nearly solved by its first sample
    assert fleet_allocation([0.1, 0.9], 4) == [2, 2]  # equal gains 0.09: the lower index goes first
    assert fleet_allocation([0.0, 0.5], 10) == [1, 9]  # p = 0 gains nothing from more samples
    assert fleet_allocation([1.0, 1.0], 10) == [1, 1]  # all gains are 0: the budget is left unspent
    assert fleet_allocation([0.0, 1.0], 5, n_min=0) == [0, 1]
    assert fleet_allocation([0.1, 0.2], 100, n_max=5) == [5, 5]  # the cap binds
    assert fleet_allocation([], 0) == []


def test_fleet_allocation_rejects_bad_arguments():
    with pytest.raises(UserError, match="budget 5"):
        fleet_allocation([0.5] * 3, 5, n_min=2)
    with pytest.raises(UserError):
        fleet_allocation([0.5, float("nan")], 5)
    with pytest.raises(UserError):
        fleet_allocation([0.5], 5, n_min=3, n_max=2)


# --- beam search -----------------------------------------------------------------------


def test_ias_of_k_hand_worked():
    # n_ias at C = 0.99: 0.5 -> 7, 0.3 -> 13, 0.2 -> 21, 0.1 -> 44
    assert ias_of_k([0.1, 0.5, 0.3], k_max=8, m_max=8, coverage=0.99, n_max=64) == 1  # 1 * 8 >= 7
    assert ias_of_k([0.1, 0.3, 0.3], k_max=8, m_max=8, coverage=0.99, n_max=64) == 2  # 8 < 13, 16 >= 13
    assert ias_of_k([0.3, 0.2, 0.1], k_max=8, m_max=8, coverage=0.99, n_max=64) == 3  # none qualifies: all 3
    assert ias_of_k([0.3, 0.2, 0.1], k_max=2, m_max=8, coverage=0.99, n_max=64) == 2  # capped by k_max
    assert ias_of_k([0.3, 0.2, 0.1], k_max=8, m_max=7, coverage=0.99, n_max=64) == 3  # 7 < 13, 14 < 21, 21 < 44
    assert ias_of_k([0.3, 0.2, 0.1], k_max=8, m_max=11, coverage=0.99, n_max=64) == 2  # 22 >= 21
    with pytest.raises(UserError):
        ias_of_k([], k_max=8, m_max=8, coverage=0.99, n_max=64)


def test_ias_of_m_divides_by_the_beams_kept():
    # weakest kept bound 0.1 -> n_ias 44; 3 beams kept -> ceil(44 / 3) = 15 per beam, not ceil(44 / k_max = 8) = 6
    assert ias_of_m([0.5, 0.3, 0.1], m_max=20, coverage=0.99, n_max=64) == 15
    assert ias_of_m([0.5, 0.3, 0.1], m_max=8, coverage=0.99, n_max=64) == 8  # capped by m_max
    assert ias_of_m([0.5, 0.5], m_max=8, coverage=0.99, n_max=64) == 4  # ceil(7 / 2)
    assert ias_of_m([0.99] * 5, m_max=8, coverage=0.99, n_max=64) == 1  # at least one
    assert ias_of_m([0.0], m_max=100, coverage=0.99, n_max=30) == 30
    with pytest.raises(UserError):
        ias_of_m([], m_max=8, coverage=0.99, n_max=64)
    with pytest.raises(UserError):
        ias_of_m([0.5], m_max=0, coverage=0.99, n_max=64)


# --- Adaptive-Consistency and ESC ------------------------------------------------------


def test_adaptive_consistency_two_categories_is_exact():
    # one seen answer with count c plus the unseen category: Beta(c + 1, 1), P(X > 1/2) = 1 - 2^-(c+1)
    for c in range(1, 8):
        assert leading_answer_probability(["a"] * c) == pytest.approx(1 - 0.5 ** (c + 1), abs=1e-15)
    assert not adaptive_consistency_stop(["a"] * 3)  # 0.9375
    assert adaptive_consistency_stop(["a"] * 4)  # 0.96875
    assert adaptive_consistency_stop(["7"] * 5, threshold=0.95)
    assert adaptive_consistency_stop(["7", None, "7", "7", "7", None, "7"])  # None casts no vote


def test_adaptive_consistency_disagreement_and_determinism():
    split = ["a", "b", "a", "b"]
    prob = leading_answer_probability(split)
    assert 0.3 < prob < 0.5  # a and b are symmetric, and the unseen answer takes the rest
    assert not adaptive_consistency_stop(split)
    assert leading_answer_probability(split, seed=3) == leading_answer_probability(split, seed=3)
    assert adaptive_consistency_stop(split) == adaptive_consistency_stop(split)
    strong = ["a"] * 12 + ["b"]
    assert leading_answer_probability(strong) > 0.95
    assert adaptive_consistency_stop(strong)
    assert not adaptive_consistency_stop(["a"] * 12 + ["b"], threshold=0.9999)


def test_adaptive_consistency_empty_and_bad_arguments():
    assert not adaptive_consistency_stop([])
    assert not adaptive_consistency_stop([None, None])
    with pytest.raises(UserError):
        adaptive_consistency_stop(["a"], threshold=0.0)
    with pytest.raises(UserError):
        adaptive_consistency_stop(["a", "b", "a"], samples=0)


def test_esc_window_stop():
    assert esc_window_stop(["3"] * 5)
    assert not esc_window_stop(["3", "3", "4", "3", "3"])
    assert not esc_window_stop(["3", "3", None, "3", "3"])
    assert not esc_window_stop([None] * 5)
    assert not esc_window_stop([])


# --- DeepConf-style confidence ---------------------------------------------------------


def test_windowed_confidence_by_hand():
    lp = [-1.0, -3.0, -2.0, 0.0, -4.0]
    assert windowed_confidence(lp, window=2) == pytest.approx([-1.0, -2.0, -2.5, -1.0, -2.0])
    assert windowed_confidence(lp, window=3) == pytest.approx([-1.0, -2.0, -2.0, -5 / 3, -2.0])
    assert windowed_confidence(lp, window=1) == pytest.approx(lp)
    assert windowed_confidence(lp, window=100) == pytest.approx([-1.0, -2.0, -2.0, -1.5, -2.0])
    assert windowed_confidence([], window=4) == []
    assert lowest_window_confidence(lp, window=2) == pytest.approx(-2.5)
    # only full windows are judged: the partial ones at the start (-6.0, -3.0) are not
    assert lowest_window_confidence([-6.0, 0.0, 0.0, 0.0], window=3) == pytest.approx(-2.0)
    assert lowest_window_confidence([-6.0, 0.0], window=3) == pytest.approx(-3.0)  # short: its whole mean


def test_a_warm_up_trace_never_exits_at_the_threshold_it_helped_set():
    """Its lowest judged window is >= the threshold; a later copy of it does not exit either,
    even with log-probabilities a few ulps apart (another batch), but one clearly below does."""
    traces = [[-6.0, 0.0, 0.0, -0.5, 0.0], [-0.2] * 7, [0.0, -2.0, -2.0, 0.0, 0.0, 0.0]]
    lowest = [lowest_window_confidence(t, window=3) for t in traces]
    threshold = min(lowest)
    assert all(live_exit(t, "length", threshold, window=3) is None for t in traces)
    weakest = traces[lowest.index(threshold)]
    assert live_exit([x * (1 + 1e-12) for x in weakest], "length", threshold, 3) is None
    assert live_exit(weakest, "length", threshold + 1e-3, window=3) is not None


def test_windowed_confidence_top_k_rows_use_negative_mean():
    rows = [[-0.1, -2.0, -4.0], [-0.5, -1.5, -1.0]]  # token confidences 2.0333.. and 1.0
    assert windowed_confidence(rows, window=2) == pytest.approx([6.1 / 3, (6.1 / 3 + 1.0) / 2])


def test_windowed_confidence_rejects_bad_input():
    with pytest.raises(UserError):
        lowest_window_confidence([], window=4)
    with pytest.raises(UserError):
        windowed_confidence([-1.0, float("nan")], window=2)
    with pytest.raises(UserError):
        windowed_confidence([-1.0, [-1.0, -2.0]], window=2)
    with pytest.raises(UserError):
        windowed_confidence([-1.0], window=0)


def test_live_exit_stops_at_the_first_full_window_below_the_threshold():
    lp = [-5.0, -0.1, -0.1, -0.1, -3.0, -3.0, -0.1]
    # window 2 means: (-5.0), -2.55, -0.1, -0.1, -1.55, -3.0, -1.55; position 0 is a partial window, not judged
    assert live_exit(lp, "length", threshold=-1.0, window=2) == 1
    assert live_exit(lp, "length", threshold=-2.6, window=2) == 5  # stopped after 6 tokens
    assert live_exit(lp, "length", threshold=-3.5, window=2) is None
    assert live_exit(lp, "length", threshold=-1.0, window=1) == 0  # window 1 judges every token
    # window 3 means: (-5.0), (-2.55), -1.73, -0.1, -1.07, -2.03, -2.03: the bad opening token is never judged
    assert live_exit(lp, "length", threshold=-2.0, window=3) == 5
    assert live_exit(lp, "length", threshold=-2.1, window=3) is None
    assert live_exit([-9.0, -9.0], "length", threshold=0.0, window=3) is None  # no full window: never stopped
    # the last token: a sample that ended there anyway (end of text, a stop string) was not stopped
    assert live_exit([-0.1, -3.0], "eos", threshold=-1.0, window=2) is None
    assert live_exit([-0.1, -3.0], "length", threshold=-1.0, window=2) == 1


def test_deepconf_threshold():
    # 11 warm-up traces, sorted: -4, -3, -2.5, -2, -1.5, -1.2, -1, -0.8, -0.5, -0.2, -0.1
    lows = [-3.0, -1.0, -2.0, -0.5, -4.0, -1.5, -2.5, -0.2, -0.8, -1.2, -0.1]
    assert deepconf_threshold(lows, keep_share=0.9) == -3.0  # 10% quantile, rank 1: keeps 10 of 11
    assert sum(v >= deepconf_threshold(lows, 0.9) for v in lows) == 10
    assert deepconf_threshold(lows, keep_share=1.0) == -4.0
    assert deepconf_threshold(lows, keep_share=0.1) == -0.2  # rank 9: keeps 2 of 11
    assert deepconf_threshold(lows, keep_share=0.5) == -1.2
    assert deepconf_threshold(lows[:10], keep_share=0.9) == -4.0  # "lower" on 10 traces keeps all: at least 90%
    with pytest.raises(UserError):
        deepconf_threshold([], 0.9)
    with pytest.raises(UserError):
        deepconf_threshold(lows, 0.0)
    with pytest.raises(UserError):
        deepconf_threshold([-1.0, math.nan], 0.9)


# --- ias-adaptive's wave rule and the oracle allocation -------------------------------


def test_first_wave_is_sized_by_the_question_estimate_within_one_wave():
    settings = AdaptiveSettings(wave=4)
    assert adaptive_wave(0.9, 0, 0.0, 0.0, 0.0, settings, 64) == 1  # easy: one sample may do
    assert adaptive_wave(0.3, 0, 0.0, 0.0, 0.0, settings, 64) == n_ias(0.3, 0.5) == 2
    assert adaptive_wave(0.01, 0, 0.0, 0.0, 0.0, settings, 64) == 4  # hard: one whole wave
    assert adaptive_wave(0.01, 0, 0.0, 0.0, 0.0, AdaptiveSettings(wave=1), 64) == 1


def test_a_confident_answer_stops_and_a_hard_solvable_question_keeps_sampling():
    settings = AdaptiveSettings(target=0.9, price=0.001, wave=2)
    assert adaptive_wave(0.5, 3, 0.95, 2.0, 40.0, settings, 64) == 0  # confident enough
    # Unsure answer, success rate estimated (2 * 0.5 + 1.5) / 5 = 0.5: gain 0.5 * 0.8 = 0.4 > 0.04 per sample.
    assert adaptive_wave(0.5, 3, 0.2, 1.5, 40.0, settings, 64) == 2
    assert adaptive_wave(0.5, 63, 0.2, 30.0, 40.0, settings, 64) == 1  # the last wave is cut at n_max
    assert adaptive_wave(0.5, 64, 0.2, 30.0, 40.0, settings, 64) == 0


def test_a_nearly_hopeless_question_stops_on_price_once_its_samples_fail():
    settings = AdaptiveSettings(target=0.9, price=0.001, wave=1, prior=4)
    tokens = 45.0  # one more sample costs 0.045 in accuracy
    stops = [n for n in range(1, 65) if adaptive_wave(0.2, n, 0.0, 0.0, tokens, settings, 64) == 0]
    # gain = 4 * 0.2 / (4 + n) (the samples' own chances are 0): still worth a sample while >= 0.045, up to n = 13.
    assert stops == list(range(14, 65))  # and once stopped, it stays stopped
    trusting = AdaptiveSettings(target=0.9, price=0.001, wave=1, prior=8)  # the question's estimate weighs more
    assert [n for n in range(1, 65) if adaptive_wave(0.2, n, 0.0, 0.0, tokens, trusting, 64) == 0][0] == 28
    free = AdaptiveSettings(target=0.9, price=0.0, wave=1)  # no price: only confidence or n_max stops
    assert adaptive_wave(0.2, 40, 0.0, 0.0, tokens, free, 64) == 1


def test_adaptive_settings_are_checked():
    with pytest.raises(UserError, match="target"):
        AdaptiveSettings(target=1.5)
    with pytest.raises(UserError, match="wave"):
        AdaptiveSettings(wave=0)
    with pytest.raises(UserError, match="price"):
        AdaptiveSettings(price=float("nan"))
    with pytest.raises(UserError, match="prior"):
        AdaptiveSettings(prior=-1.0)


def _brute_force_allocation(curves, budget):
    best = None
    for counts in itertools.product(*(range(1, len(c) + 1) for c in curves)):
        if sum(counts) <= budget:
            value = sum(c[n - 1] for c, n in zip(curves, counts))
            best = value if best is None else max(best, value)
    return best


def test_oracle_allocation_jumps_over_a_flat_start_and_matches_brute_force_on_hull_curves():
    late = [0.0, 0.0, 0.0, 0.9]  # nothing until the 4th sample: the greedy must see past the flat start
    early = [0.5, 0.6, 0.65, 0.66]
    counts = oracle_allocation([late, early], 6)
    assert counts == [4, 2] and sum(counts) == 6
    assert oracle_allocation([early, early], 2) == [1, 1]  # one sample each at least
    rng = np.random.default_rng(0)
    for _ in range(20):  # concave curves: greedy is optimal
        curves = [np.cumsum(np.sort(rng.uniform(0, 0.3, 4))[::-1]).tolist() for _ in range(3)]
        budget = int(rng.integers(3, 13))
        counts = oracle_allocation(curves, budget)
        assert sum(counts) <= budget
        assert sum(c[n - 1] for c, n in zip(curves, counts)) == pytest.approx(_brute_force_allocation(curves, budget))
    with pytest.raises(UserError, match="budget"):
        oracle_allocation([early, early], 1)
