"""Measuring methods on a shared pool: outcomes, orderings, the oracles, `ias-adaptive`'s tuning.

Sample j of a problem has a seed derived from (run seed, problem id, j), so the first N
samples of an N_max run *are* an N-sample run, and any ordering of a question's samples is
an equally likely run. `ias eval` runs every registered method (`ias.methods`) on the pool in
several such orderings (`reorder`; ordering 0 is the pool as drawn) and averages its
`Outcome`s (`expected`). What is here is what only an evaluation has: the oracles, which
know which samples are right, and the search over `ias-adaptive`'s settings on a tuning
pool, which replays its decision rule (`ias.scaling.budget.adaptive_wave`, the rule the live
method calls) for hundreds of settings at once.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, fields, replace
from functools import lru_cache
from typing import Callable, NamedTuple, Sequence

import numpy as np

from ias.calibration.posthoc import IsotonicRegression
from ias.methods.base import unit as _unit
from ias.methods.ias_adaptive import ConfidenceMap, count_band
from ias.policy.base import derive_seed
from ias.scaling.budget import (
    UNREAD,
    AdaptiveSettings,
    adaptive_wave,
    first_wave,
    n_ias,
    question_share,
    wave_after,
)
from ias.scaling.pool import Outcome, PoolProblem
from ias.scaling.select import best_by_prefix


def expected(outcomes: Sequence[Outcome]) -> Outcome:
    """One problem's outcome averaged over orderings of its pool (the first ordering's answer)."""
    k = len(outcomes)
    confidences = [o.confidence for o in outcomes if o.confidence is not None]
    return Outcome(
        outcomes[0].answer,
        sum(float(o.correct) for o in outcomes) / k,
        sum(o.samples for o in outcomes) / k,
        sum(o.tokens for o in outcomes) / k,
        sum(o.prm_tokens for o in outcomes) / k,
        sum(confidences) / len(confidences) if len(confidences) == k else None,
    )


#: Seeded random orderings of each question's pool that every replayed method is averaged
#: over: the pool's first N samples alone are one noisy draw of an N-sample run.
ORDERINGS = 16


def reorder(record: PoolProblem, seed: int, ordering: int) -> PoolProblem:
    """The record with its samples in the `ordering`-th seeded random order (a shallow copy):
    any order of independently drawn samples is an equally likely run. Ordering 0 is the
    pool as drawn: the run `ias solve` makes with the same seed."""
    if ordering == 0:
        return record
    rng = np.random.default_rng(derive_seed(seed, record.id, "ordering", ordering))
    samples = record.samples
    return replace(record, samples=tuple(samples[i] for i in rng.permutation(len(samples))))


def lower_bound(record: PoolProblem) -> float:
    """The calibrated lowest quantile of the question alone (the paper budgets from the 10% one)."""
    reading = record.reading()
    if reading.quantiles:
        return reading.quantiles[0]
    return UNREAD if reading.score is None else reading.score


def median(record: PoolProblem) -> float:
    """The PRM's score of the question alone (the calibrated median, with a calibrator)."""
    score = record.reading().score
    return UNREAD if score is None else score


# --- ias-adaptive ----------------------------------------------------------------------


def fit_confidence(views: Sequence[PrefixView]) -> ConfidenceMap:
    """`ias-adaptive`'s confidence map, fitted on every prefix of every (reordered) tuning
    record: the chosen sample's calibrated score -> whether it is right, over all prefixes
    and per band of samples drawn (the top of many runs higher than the top of few; on
    `ias demo`'s calib pool a chosen 0.5 is right 6% of the time among 1-3 samples, 22%
    among 32 or more)."""
    x = np.concatenate([v.chosen_score for v in views])
    y = np.concatenate([v.chosen_correct for v in views]).astype(float)
    bands = np.concatenate([[count_band(n) for n in range(1, len(v.chosen) + 1)] for v in views]).astype(int)
    by_band = {int(b): IsotonicRegression().fit(x[bands == b], y[bands == b]) for b in np.unique(bands)}
    return ConfidenceMap(IsotonicRegression().fit(x, y), by_band)


class PrefixView(NamedTuple):
    """What a sequential method knows after each prefix of a record's samples (index k: the
    first k + 1): the "best" choice, its score and correctness, each sample's clipped score
    and the running sum of tokens. Computed once; every setting replays from it."""

    chosen: list[int]
    chosen_score: np.ndarray
    chosen_correct: np.ndarray
    scores: np.ndarray
    token_sum: np.ndarray


class Readings(NamedTuple):
    """A view read through a confidence map: after each prefix, the chosen answer's confidence
    and the running sum of every sample's own chance of being right."""

    confidence: np.ndarray
    chance_sum: np.ndarray


def read_view(view: PrefixView, confidence: ConfidenceMap) -> Readings:
    """The view's `Readings` through `confidence` (what `adaptive_wave` is given)."""
    drawn = np.arange(1, len(view.chosen) + 1)
    return Readings(confidence.chosen(view.chosen_score, drawn), np.cumsum(confidence(view.scores)))


def prefix_view(record: PoolProblem, raw: bool = False) -> PrefixView:
    """The record's `PrefixView`, reading each sample's score (`raw`: the raw PRM's)."""
    samples = record.samples
    read = [s.raw() if raw else s.score for s in samples]
    scores = [x if x is not None else float("-inf") for x in read]
    chosen = best_by_prefix([s.answer for s in samples], scores)
    return PrefixView(
        chosen,
        np.array([_unit(scores[i]) for i in chosen]),
        np.array([samples[i].correct for i in chosen]),
        np.array([_unit(x) for x in scores]),
        np.cumsum([s.generated_tokens for s in samples]),
    )


def adaptive_size(view: PrefixView, readings: Readings, question: float, settings: AdaptiveSettings, n_max: int) -> int:
    """How many samples `ias-adaptive` draws, wave by wave, deciding each time only from the
    finished samples (`adaptive_wave`)."""
    n_max = min(n_max, len(view.chosen))
    n, more = 0, adaptive_wave(question, 0, 0.0, 0.0, 0.0, settings, n_max)
    while more:
        n = min(n + more, n_max)
        more = adaptive_wave(
            question,
            n,
            float(readings.confidence[n - 1]),
            float(readings.chance_sum[n - 1]),
            float(view.token_sum[n - 1]) / n,
            settings,
            n_max,
        )
    return n


#: The settings `ias-adaptive` is tuned over (on the tuning split's pool).
TARGETS = (0.8, 0.9, 0.95)
PRICES = (0.0001, 0.00015, 0.0002, 0.0003, 0.0004, 0.0005, 0.0006, 0.0008, 0.001, 0.0012, 0.0015, 0.002, 0.003, 0.005)
WAVES = (1, 2, 4)
PRIORS = (1.0, 2.0, 4.0, 8.0)
#: Mean samples per question that `ias-adaptive@B` and `oracle-alloc@B` spend.
MEAN_BUDGETS = (2, 4, 8, 16, 32)
#: `ias-adaptive@B` keeps to fixed N = B's tokens with this confidence over resamples of the
#: tuning problems (`tokens_high`): a setting that only just fits on the tuning pool spends
#: more on other problems about half the time (on `ias demo`, +16% on test at B = 8).
TOKEN_CONFIDENCE = 0.95
RESAMPLES = 1000
#: Wave growths `ias-adaptive@B` may also take (besides the run's): they compare at equal
#: tokens, and waves growing by half waste fewer tokens than doubling ones while a question
#: needing n samples still waits only about log1.5(n) waves (the main setting keeps the run's
#: growth, whose live wall time is measured: `benchmarks/live_adaptive.py`).
BUDGET_GROWTHS = (1.5,)


class ReplayTable(NamedTuple):
    """Many views' readings as padded arrays (row: a record; column n - 1: after n samples),
    so that one setting replays on every record at once."""

    correct: np.ndarray
    confidence: np.ndarray
    chance_sum: np.ndarray
    token_sum: np.ndarray
    question: list[float]
    drawn_max: np.ndarray  # each record's cap: min(n_max, its pool size)


def replay_table(
    views: Sequence[PrefixView], readings: Sequence[Readings], questions: Sequence[float], n_max: int
) -> ReplayTable:
    """The `ReplayTable` of views read through their readings (`read_view`)."""
    width = max(min(n_max, len(v.chosen)) for v in views)

    def pad(rows) -> np.ndarray:
        table = np.zeros((len(views), width))
        for i, row in enumerate(rows):
            row = np.asarray(row, dtype=float)[:width]
            table[i, : len(row)] = row
        return table

    return ReplayTable(
        pad(v.chosen_correct for v in views),
        pad(r.confidence for r in readings),
        pad(r.chance_sum for r in readings),
        pad(v.token_sum for v in views),
        list(questions),
        np.array([min(n_max, len(v.chosen)) for v in views])[:, None],
    )


def replay_sizes(table: ReplayTable, settings: AdaptiveSettings) -> np.ndarray:
    """How many samples `ias-adaptive` draws on each record of `table`: `adaptive_size` on
    all of them at once (the same arithmetic, elementwise, so the same stops): a record stops
    at the first wave's end whose readings stop it (`adaptive_wave`) or at its cap."""
    return _sizes(table, settings, _cheap(table, settings.prior, settings.price))


def _cheap(table: ReplayTable, prior: float, price: float) -> np.ndarray:
    """Where one more sample's expected gain is below its price (`adaptive_wave`)."""
    n = np.arange(1, table.correct.shape[1] + 1)[None, :]
    question = np.array([question_share(q) for q in table.question])[:, None]
    gain = (prior * question + table.chance_sum) / (prior + n) * (1.0 - table.confidence)
    return gain < price * (table.token_sum / n)


def _sizes(table: ReplayTable, settings: AdaptiveSettings, cheap: np.ndarray) -> np.ndarray:
    """`replay_sizes` given `_cheap` (shared by every target and wave of one prior and price)."""
    n = np.arange(1, table.correct.shape[1] + 1)[None, :]
    cap = table.drawn_max
    first = [first_wave(q, settings.wave, int(m)) for q, m in zip(table.question, cap[:, 0])]
    ends = np.stack([_wave_ends(f, settings, n.shape[1]) for f in first]) | (n == cap)
    stop = (n >= cap) | (table.confidence >= settings.target) | cheap
    return np.argmax(ends & stop, axis=1) + 1


@lru_cache(maxsize=4096)
def _wave_ends_cached(first: int, wave: int, growth: float, width: int) -> np.ndarray:
    ends = np.zeros(width, dtype=bool)
    n = first
    while n <= width:
        ends[n - 1] = True
        n += wave_after(n, AdaptiveSettings(wave=wave, growth=growth))
    return ends


def _wave_ends(first: int, settings: AdaptiveSettings, width: int) -> np.ndarray:
    """Where the waves of a question whose first wave is `first` end (column n - 1: after n samples)."""
    return _wave_ends_cached(first, settings.wave, settings.growth, width)


def adaptive_grid(
    views: Sequence[Sequence[PrefixView]],
    records: Sequence[Sequence[PoolProblem]],
    n_max: int,
    confidence: ConfidenceMap,
    growth: float = 1.0,
) -> list[dict]:
    """Every setting's accuracy, mean samples per question and tokens on reordered records
    (`records[k][i]`: ordering k of question i), expected over the orderings; every setting
    with the waves' `growth` (a latency setting of the run, not tuned)."""
    flat = [v for row in views for v in row]
    questions = [median(r) for r in records[0]] * len(views)
    table = replay_table(flat, [read_view(v, confidence) for v in flat], questions, n_max)
    rows = np.arange(len(flat))
    high = _token_bound(views[0])
    found = {}
    for prior, price in itertools.product(PRIORS, PRICES):
        cheap = _cheap(table, prior, price)
        for target, wave in itertools.product(TARGETS, WAVES):
            settings = AdaptiveSettings(target, price, wave, prior, growth)
            n = _sizes(table, settings, cheap)
            right = float(table.correct[rows, n - 1].sum())
            spent = table.token_sum[rows, n - 1].reshape(len(views), -1).mean(axis=0)  # per question
            found[settings] = {
                **asdict(settings),
                "accuracy": round(right / len(flat), 4),
                "samples": round(float(n.sum()) / len(flat), 3),
                "tokens": round(float(spent.sum()), 1),
                "tokens_high": round(high(spent), 1),
            }
    return [found[AdaptiveSettings(*key, growth)] for key in itertools.product(TARGETS, PRICES, WAVES, PRIORS)]


def _token_bound(views: Sequence[PrefixView]) -> Callable[[np.ndarray], float]:
    """A function from each question's tokens to the `TOKEN_CONFIDENCE` upper bound of their
    total, as a multiple of fixed N = 1's total (each question's mean sample length), over
    seeded resamples of the questions, expressed in this pool's fixed N = 1 tokens."""
    one = np.array([float(v.token_sum[-1]) / len(v.chosen) for v in views])
    counts = np.random.default_rng(0).multinomial(len(one), np.full(len(one), 1.0 / len(one)), size=RESAMPLES)
    base = counts @ one

    def bound(spent: np.ndarray) -> float:
        return float(np.quantile((counts @ spent) / base, TOKEN_CONFIDENCE)) * float(one.sum())

    return bound


def choose_settings(
    grid: Sequence[dict], tolerance: float, one_sample_tokens: float, growth: float | None = None
) -> dict:
    """`ias-adaptive`'s settings: the cheapest (tokens) within `tolerance` of the most accurate
    among those with the run's `growth` (None: any);
    `ias-adaptive@B`: the most accurate whose tokens, at `TOKEN_CONFIDENCE` over resamples of
    the tuning problems (`tokens_high`), are at most fixed N = B's (`one_sample_tokens`: fixed
    N = 1's expected tokens on the same pool), so that on other problems too the two are
    compared at equal compute (the cheapest setting if none is that cheap)."""
    own = [g for g in grid if growth is None or g["growth"] == growth]
    top = max(g["accuracy"] for g in own)
    main = min((g for g in own if g["accuracy"] >= top - tolerance), key=lambda g: g["tokens"])
    by_budget = {}
    for b in MEAN_BUDGETS:
        within = [g for g in grid if g["tokens_high"] <= b * one_sample_tokens]
        by_budget[b] = (
            max(within, key=lambda g: (g["accuracy"], -g["tokens"])) if within else min(grid, key=lambda g: g["tokens"])
        )
    keys = [f.name for f in fields(AdaptiveSettings)]
    return {
        "settings": {k: main[k] for k in keys},
        "by_budget": {str(b): {k: g[k] for k in keys} for b, g in by_budget.items()},
    }


def selected_curves(views: Sequence[Sequence[PrefixView]]) -> list[list[float]]:
    """Each question's true curve: the chance the best-scored of its first n samples is right,
    n = 1 .. pool size, expected over the orderings (`views[k][i]`)."""
    return [np.mean([row[i].chosen_correct for row in views], axis=0).tolist() for i in range(len(views[0]))]


def oracle_alloc(records: Sequence[PoolProblem], views: Sequence[PrefixView], sizes: Sequence[int]) -> list[Outcome]:
    """`oracle-alloc` on one ordering: question i gets `sizes[i]` samples (from the true curves)."""
    return [_best_of_first(r, v, n) for r, v, n in zip(records, views, sizes)]


def oracle_ias(record: PoolProblem, view: PrefixView, coverage: float, n_max: int) -> Outcome:
    """N_IAS from the question's true success rate (its share of right samples in the pool):
    no estimator of p budgets better by the IAS rule; not free of the rule's own limits."""
    return _best_of_first(record, view, n_ias(record.p_true, coverage, 1, min(n_max, len(record.samples))))


def _best_of_first(record: PoolProblem, view: PrefixView, n: int) -> Outcome:
    """The best-scored of a record's first n samples and what drawing and reading them cost."""
    samples = record.samples[:n]
    chosen = samples[view.chosen[n - 1]]
    return Outcome(
        chosen.answer,
        chosen.correct,
        n,
        sum(s.generated_tokens for s in samples),
        sum(s.prm_tokens for s in samples),
        float(view.chosen_score[n - 1]),
    )
