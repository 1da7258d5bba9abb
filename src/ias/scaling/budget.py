"""Budget and stopping rules shared by every adaptive strategy.

Instance-adaptive scaling (SPEC section 5) turns an estimated chance of success into a
sample count; the peers it is measured against (SPEC section 7) decide when to stop
sampling from the samples themselves. Keeping all of these rules here, as small pure
functions, lets Best-of-N, beam search and the baselines spend budget by one arithmetic
and lets the tests check that arithmetic without a model.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

from ias.confidence import judged, window_mean
from ias.errors import UserError


def _check_int(name: str, value: int, low: int) -> int:
    """A count must be a whole number; a float here is almost always a caller bug."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise UserError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _check_share(name: str, value: float, *, closed_top: bool = False) -> float:
    """Coverages and shares live in (0, 1) (or (0, 1]); NaN fails every comparison and is rejected too."""
    value = float(value)
    ok = 0.0 < value <= 1.0 if closed_top else 0.0 < value < 1.0
    if not ok:
        interval = "(0, 1]" if closed_top else "(0, 1)"
        raise UserError(f"{name} must be in {interval}, got {value!r}")
    return value


def _check_bounds(n_min: int, n_max: int, low: int = 1) -> tuple[int, int]:
    """The sample range must be non-empty, or clipping would be ill-defined."""
    n_min = _check_int("n_min", n_min, low)
    n_max = _check_int("n_max", n_max, low)
    if n_min > n_max:
        raise UserError(f"n_min ({n_min}) must not exceed n_max ({n_max})")
    return n_min, n_max


#: The success estimate of what the PRM could not read (too long, NaN): none, so IAS budgets
#: it N_max, the fixed budget, and beam search ranks it last. An absent estimate must never
#: cut a budget.
UNREAD = 0.0


def _probability(p: float, name: str = "p") -> float:
    """A success estimate as a float; NaN means a failed estimate and must not be silently budgeted."""
    p = float(p)
    if math.isnan(p):
        raise UserError(f"{name} is NaN; cannot budget from a missing estimate")
    return p


def _reaches(p: float, n: int, coverage: float) -> bool:
    """Whether n samples of success chance p reach the coverage, evaluated as the definition says."""
    return 1.0 - (1.0 - p) ** n >= coverage


# --- the IAS sample rule -------------------------------------------------------------


def n_ias(p: float, coverage: float = 0.99, n_min: int = 1, n_max: int = 64, eps: float = 1e-6) -> int:
    """Smallest N with 1 - (1 - p)^N >= coverage, clipped to [n_min, n_max].

    p is clamped into [eps, 1 - eps] so that p = 0 asks for n_max rather than infinity and
    p = 1 for n_min rather than zero. The closed form ceil(log(1 - C) / log(1 - p)) can land
    one off when the ratio is a whole number up to rounding, so the result is nudged until
    it is exactly the smallest N that satisfies the inequality in floating point.
    """
    p = _probability(p)
    coverage = _check_share("coverage", coverage)
    n_min, n_max = _check_bounds(n_min, n_max)
    if not 0.0 < eps < 0.5:
        raise UserError(f"eps must be in (0, 0.5), got {eps!r}")
    p = min(max(p, eps), 1.0 - eps)
    ratio = math.log1p(-coverage) / math.log1p(-p)
    if ratio >= n_max:
        return n_max
    n = max(1, math.ceil(ratio))
    while n > 1 and _reaches(p, n - 1, coverage):
        n -= 1
    while not _reaches(p, n, coverage) and n < n_max:
        n += 1
    return min(max(n, n_min), n_max)


# --- sequential IAS and fleet allocation ----------------------------------------------


def chance_any_correct(ps: Sequence[float]) -> float:
    """1 - prod(1 - p_i): the chance that at least one of independent samples is right.

    This is the statistic sequential IAS watches: each new sample brings its own estimate,
    and sampling can stop once the samples so far already reach the coverage.
    """
    miss = 1.0
    for i, p in enumerate(ps):
        p = min(max(_probability(p, f"ps[{i}]"), 0.0), 1.0)
        miss *= 1.0 - p
    return 1.0 - miss


def sequential_should_stop(ps: Sequence[float], coverage: float) -> bool:
    """Stop when the samples drawn so far already give the target chance of one correct answer."""
    coverage = _check_share("coverage", coverage)
    return chance_any_correct(ps) >= coverage


def fleet_allocation(ps: Sequence[float], budget: int, n_min: int = 1, n_max: int = 64) -> list[int]:
    """Split a total sample budget across problems to maximise the expected number solved.

    Maximises sum_i 1 - (1 - p_i)^{N_i} with sum N_i <= budget and n_min <= N_i <= n_max.
    Each term is concave in N_i (its marginal gain p_i (1 - p_i)^{N_i} never grows), so
    handing out one sample at a time to the largest marginal gain is optimal. Ties go to the
    lower index so the answer is deterministic. n_min may be 0 here: a problem judged
    hopeless (p = 0) can then get nothing.
    """
    n_min, n_max = _check_bounds(n_min, n_max, low=0)
    budget = _check_int("budget", budget, 0)
    probs = [min(max(_probability(p, f"ps[{i}]"), 0.0), 1.0) for i, p in enumerate(ps)]
    if budget < n_min * len(probs):
        raise UserError(f"budget {budget} is below n_min * problems = {n_min} * {len(probs)}")
    counts = [n_min] * len(probs)
    heap = [(-p * (1.0 - p) ** n_min, i) for i, p in enumerate(probs) if n_min < n_max]
    heapq.heapify(heap)
    spent = n_min * len(probs)
    while spent < budget and heap:
        neg_gain, i = heapq.heappop(heap)
        if neg_gain >= 0.0:
            break  # the largest gain left is zero: more samples cannot help anyone
        counts[i] += 1
        spent += 1
        if counts[i] < n_max:
            p = probs[i]
            heapq.heappush(heap, (-p * (1.0 - p) ** counts[i], i))
    return counts


# --- beam search: IAS-of-K and IAS-of-M -----------------------------------------------


def ias_of_k(lower_bounds: Sequence[float], k_max: int, m_max: int, coverage: float, n_max: int) -> int:
    """How many beams to keep: the smallest k whose k * m_max samples cover the k-th best beam.

    Sorting the lower bounds descending, s_(1) >= s_(2) >= ..., keep the smallest k with
    k * m_max >= N_IAS(s_(k)); confident beams let the search narrow early. When no k
    qualifies the search keeps as many as it may, min(k_max, number of beams).
    """
    k_max = _check_int("k_max", k_max, 1)
    m_max = _check_int("m_max", m_max, 1)
    if not lower_bounds:
        raise UserError("lower_bounds is empty; there are no beams to keep")
    bounds = sorted((_probability(s, f"lower_bounds[{i}]") for i, s in enumerate(lower_bounds)), reverse=True)
    k_cap = min(k_max, len(bounds))
    for k in range(1, k_cap + 1):
        if k * m_max >= n_ias(bounds[k - 1], coverage, 1, n_max):
            return k
    return k_cap


def ias_of_m(kept_lower_bounds: Sequence[float], m_max: int, coverage: float, n_max: int) -> int:
    """Samples per kept beam: the weakest kept beam's N_IAS shared over the K beams actually kept.

    Dividing by the K kept (not k_max, a defect of the reference) is what makes the total
    K * m reach N_IAS for the hardest kept beam.
    """
    m_max = _check_int("m_max", m_max, 1)
    if not kept_lower_bounds:
        raise UserError("kept_lower_bounds is empty; there are no kept beams to sample from")
    bounds = [_probability(s, f"kept_lower_bounds[{i}]") for i, s in enumerate(kept_lower_bounds)]
    need = n_ias(min(bounds), coverage, 1, n_max)
    k = len(bounds)
    return max(1, min(-(-need // k), m_max))


# --- answer-agreement stopping rules (peers) ------------------------------------------


def _beta_half_tail(a: int, b: int) -> float:
    """P(X > 1/2) for X ~ Beta(a, b) with whole a, b: P(Binomial(a + b - 1, 1/2) <= a - 1), exactly."""
    n = a + b - 1
    return math.fsum(math.comb(n, j) for j in range(a)) / 2.0**n


def leading_answer_probability(answers: Sequence[str | None], samples: int = 2000, seed: int = 0) -> float:
    """Posterior chance that the most frequent answer is the true mode of the answer distribution.

    Posterior Dirichlet(counts + 1) over the seen answers plus one "unseen" category with
    pseudo-count 1, so a lone answer is never certain. With two categories the chance is an
    exact Beta tail; otherwise it is a Monte Carlo estimate from `samples` draws of a
    seeded generator, hence deterministic. None answers carry no vote; with none left: 0.
    Pass answers already normalised (e.g. `ias.scaling.select.answer_key`) so that equal
    answers compare equal.
    """
    samples = _check_int("samples", samples, 1)
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return 0.0
    ordered = [c for _, c in counts.most_common()]  # the leading answer first; ties keep first-seen order
    return _leading_share(tuple(c + 1 for c in ordered) + (1,), samples, seed)


@lru_cache(maxsize=1 << 14)
def _leading_share(alpha: tuple[int, ...], samples: int, seed: int) -> float:
    """P(the first category is the largest) under Dirichlet(alpha); remembered, since a replay
    over many orderings meets the same vote counts again and again."""
    if len(alpha) == 2:
        return _beta_half_tail(alpha[0], alpha[1])
    draws = np.random.default_rng(seed).dirichlet(alpha, size=samples)
    return float(np.mean(np.argmax(draws, axis=1) == 0))


def adaptive_consistency_stop(
    answers: Sequence[str | None], threshold: float = 0.95, samples: int = 2000, seed: int = 0
) -> bool:
    """Adaptive-Consistency (Aggarwal et al. 2023): stop once the leading answer is likely enough the mode.

    Stops when `leading_answer_probability` reaches `threshold` (0.95 in the paper's setting).
    That chance is at most the exact chance that the leader beats its closest rival alone (a
    Beta tail), so while that falls short no Monte Carlo is drawn: a replay over many
    orderings asks this tens of thousands of times.
    """
    threshold = _check_share("threshold", threshold, closed_top=True)
    samples = _check_int("samples", samples, 1)
    rivals = [c for _, c in Counter(a for a in answers if a is not None).most_common(2)]
    if len(rivals) == 2 and _beta_half_tail(rivals[0] + 1, rivals[1] + 1) < threshold:
        return False
    return leading_answer_probability(answers, samples, seed) >= threshold


def esc_window_stop(answers: Sequence[str | None]) -> bool:
    """Early-stopping self-consistency: stop when the latest window agrees on one real answer.

    The caller passes only the latest window (e.g. 5 answers); an empty window or any
    missing answer does not count as agreement.
    """
    if not answers or answers[0] is None:
        return False
    return all(a == answers[0] for a in answers)


# --- confidence-based early exit (DeepConf style) -------------------------------------


def _token_confidences(token_logprobs: Sequence[Sequence[float]] | Sequence[float]) -> np.ndarray:
    """Per-token confidence, higher meaning more confident.

    A flat sequence holds the chosen token's log-probability, which is its confidence. A
    sequence of sequences holds each token's top-k log-probabilities, and the confidence is
    DeepConf's negative mean of them. Thresholds learned on one kind only apply to that kind.
    """
    if len(token_logprobs) == 0:
        return np.zeros(0)
    nested = [isinstance(t, (Sequence, np.ndarray)) for t in token_logprobs]
    if all(nested):
        rows = []
        for i, top in enumerate(token_logprobs):
            values = np.asarray(top, dtype=float)
            if values.size == 0:
                raise UserError(f"token {i} has no top-k log-probabilities")
            rows.append(-float(np.mean(values)))
        conf = np.asarray(rows, dtype=float)
    elif not any(nested):
        conf = np.asarray(token_logprobs, dtype=float)
    else:
        raise UserError("token_logprobs mixes single log-probabilities with top-k lists")
    bad = np.flatnonzero(~np.isfinite(conf))
    if bad.size:
        raise UserError(f"token {int(bad[0])} has a non-finite log-probability ({conf[bad[0]]!r})")
    return conf


def windowed_confidence(token_logprobs: Sequence[Sequence[float]] | Sequence[float], window: int = 16) -> list[float]:
    """Mean token confidence over the last `window` tokens, at every position.

    Position j averages tokens max(0, j - window + 1) .. j, so early positions average
    fewer tokens. A sliding mean catches a trace that loses its footing locally, which a
    whole-trace mean would wash out. The means are `ias.confidence.window_mean`'s, the
    arithmetic a policy stopping a sample live uses, so replay and live agree exactly.
    """
    window = _check_int("window", window, 1)
    return list(_window_means(tuple(_token_confidences(token_logprobs).tolist()), window))


@lru_cache(maxsize=1 << 15)
def _window_means(conf: tuple[float, ...], window: int) -> tuple[float, ...]:
    """Cached: a replay reads each pool sample's windows once per ordering of the pool."""
    return tuple(window_mean(conf, end, window) for end in range(len(conf)))


def lowest_window_confidence(token_logprobs: Sequence[Sequence[float]] | Sequence[float], window: int = 16) -> float:
    """The trace's weakest stretch: the minimum windowed confidence over its judged positions."""
    values = windowed_confidence(token_logprobs, window)
    if not values:
        raise UserError("token_logprobs is empty; an empty trace has no confidence")
    return min(values[j] for j in judged(len(values), window))


def deepconf_threshold(warmup_lowest: Sequence[float], keep_share: float = 0.9) -> float:
    """Exit threshold that would have kept the top `keep_share` of the warm-up traces.

    It is the (1 - keep_share) quantile of their lowest-window confidences, taken with
    method "lower" so it is a value a warm-up trace actually had.
    """
    keep_share = _check_share("keep_share", keep_share, closed_top=True)
    values = np.asarray(list(warmup_lowest), dtype=float)
    if values.size == 0:
        raise UserError("warmup_lowest is empty; the threshold needs warm-up traces")
    if not np.all(np.isfinite(values)):
        raise UserError("warmup_lowest holds a non-finite confidence")
    # 1 - 0.9 is 0.0999...98 in floats, which would drop "lower" one rank too far on e.g. 11 traces
    share_cut = round(1.0 - keep_share, 12)
    return float(np.quantile(values, share_cut, method="lower"))


# --- ias-adaptive: sequential, selector-aware, calibrated -------------------------------


@dataclass(frozen=True)
class AdaptiveSettings:
    """The knobs of `ias-adaptive`: stop once the chosen answer's calibrated chance of being
    right reaches `target`, or once one more sample's expected gain in accuracy is below
    `price` per generated token; later waves draw `wave` samples each, or with `growth` g > 1
    (g - 1) times the samples finished when that is more (g = 2: each wave doubles what the
    question has, so a question needing n samples waits for about log2(n) waves, not n);
    `prior`: how many finished samples the question's own estimate is worth when it and theirs
    are pooled into one estimate of the question's success rate."""

    target: float = 0.9
    price: float = 0.0005
    wave: int = 1
    prior: float = 2.0
    growth: float = 1.0

    def __post_init__(self) -> None:
        _check_share("target", self.target, closed_top=True)
        _check_int("wave", self.wave, 1)
        if not (math.isfinite(self.growth) and self.growth >= 1):
            raise UserError(f"growth must be a finite number >= 1, got {self.growth!r}")
        for name in ("price", "prior"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise UserError(f"{name} must be a finite number >= 0, got {value!r}")


def first_wave(question: float, wave: int, n_max: int) -> int:
    """The first wave's size from the question alone: enough samples for an even chance, by
    the question's calibrated estimate, that one is right (1 for an easy question), at most
    one wave."""
    return min(n_ias(question, 0.5, 1, n_max), wave)


def question_share(question: float) -> float:
    """The question's calibrated estimate as a success rate (clipped to [0, 1]; NaN refused)."""
    return min(max(_probability(question), 0.0), 1.0)


def success_estimate(question: float, chance_sum: float, finished: int, prior: float) -> float:
    """The question's success rate: its calibrated estimate, worth `prior` samples, pooled
    with the finished samples' own calibrated chances of being right (their sum)."""
    return (prior * question_share(question) + chance_sum) / (prior + finished)


def adaptive_wave(
    question: float,
    finished: int,
    confidence: float,
    chance_sum: float,
    mean_tokens: float,
    settings: AdaptiveSettings,
    n_max: int,
) -> int:
    """How many samples `ias-adaptive` draws next (0: stop), from what a live run knows.

    `question`: the calibrated estimate of the question alone; `finished`: samples drawn;
    `confidence`: the calibrated chance that the answer chosen from them is right;
    `chance_sum`: the sum of their own calibrated chances of being right; `mean_tokens`:
    their mean length.
    One more sample is worth the chance that it is right while the chosen answer is wrong
    (a right sample from this PRM almost always scores high enough to be chosen); it is
    bought while that beats its price, `price * mean_tokens`. Easy questions stop on
    confidence, hopeless ones on price (their estimate falls with every failed sample),
    and hard but solvable ones keep sampling.
    """
    if finished == 0:
        return first_wave(question, settings.wave, n_max)
    left = n_max - finished
    if left <= 0 or confidence >= settings.target:
        return 0
    gain = success_estimate(question, chance_sum, finished, settings.prior) * (1.0 - confidence)
    if gain < settings.price * mean_tokens:
        return 0
    return min(wave_after(finished, settings), left)


def wave_after(finished: int, settings: AdaptiveSettings) -> int:
    """A later wave's size: `wave`, or `growth - 1` times the samples finished when more."""
    return max(settings.wave, math.ceil((settings.growth - 1.0) * finished - 1e-9))


def oracle_allocation(curves: Sequence[Sequence[float]], budget: int) -> list[int]:
    """Samples per question maximising the sum of their expected accuracies `curves[i][n - 1]`
    (each question's true curve) under a total of `budget` samples, one sample at least each.

    The curves need not be concave (a PRM that picks a wrong answer among many makes them
    fall), so the greedy step is to each question's best average gain per sample over any
    number of further samples (its concave hull); a step larger than the budget left is cut.
    """
    if not curves:
        return []
    budget = _check_int("budget", budget, len(curves))
    counts = [1] * len(curves)

    def step(i: int) -> tuple[float, int] | None:
        curve, n = curves[i], counts[i]
        if n >= len(curve):
            return None
        gain, size = max(((curve[m - 1] - curve[n - 1]) / (m - n), m - n) for m in range(n + 1, len(curve) + 1))
        return (gain, size) if gain > 0 else None

    heap = [(-s[0], i, s[1]) for i in range(len(curves)) if (s := step(i))]
    heapq.heapify(heap)
    spent = len(curves)
    while heap and spent < budget:
        _, i, size = heapq.heappop(heap)
        size = min(size, budget - spent)
        counts[i] += size
        spent += size
        if s := step(i):
            heapq.heappush(heap, (-s[0], i, s[1]))
    return counts
