"""Adaptive strategies and their peers, replayed on one shared pool of samples per problem.

Sample j of a problem has a seed derived from (run seed, problem id, j), so the first N
samples of an N_max run *are* an N-sample run: every method that draws whole samples one
after another (fixed Best-of-N, IAS, sequential IAS, the fleet budget, self-consistency,
Adaptive-Consistency, ESC, DeepConf's early exit) is replayed exactly on the pool, and all
are compared on the same samples. Each method returns an `Outcome` per problem with what
it would have spent: generated tokens (DeepConf counts a stopped trace up to its exit),
samples, PRM tokens (IAS also pays for reading the question).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, fields
from typing import Callable, NamedTuple, Sequence

import numpy as np

from ias.calibration.posthoc import IsotonicRegression
from ias.policy.base import derive_seed
from ias.scaling.budget import (
    UNREAD, AdaptiveSettings, adaptive_consistency_stop, adaptive_wave, chance_any_correct, deepconf_threshold,
    esc_window_stop, first_exit, fleet_allocation, lowest_window_confidence, n_ias,
)
from ias.scaling.select import answer_key, best_by_prefix, select


@dataclass(frozen=True)
class Budget:
    """The IAS settings: target coverage C, the quantile used as p, and the sample range."""

    coverage: float = 0.99
    n_min: int = 1
    n_max: int = 64
    esc_window: int = 5
    ac_threshold: float = 0.95
    deepconf_warmup: int = 16
    deepconf_keep: float = 0.9
    deepconf_window: int = 8
    k_max: int = 8  # beam search: most beams kept
    m_max: int = 8  # beam search: most samples per kept beam
    beam_freq: int = 1  # beam search: steps between PRM readings
    beam_rounds: int = 16  # beam search: rounds before the beams are continued to the end


@dataclass
class Outcome:
    """What a method chose on one problem and what it spent. Averaged over orderings of the
    pool (`expected`), `correct` is the chance it is right and the counts are means.
    `confidence`: the chosen answer's chance of being right, as the method's user is told it."""

    answer: str | None
    correct: bool | float
    samples: int | float
    tokens: int | float
    prm_tokens: int | float
    confidence: float | None = None

    def to_dict(self) -> dict:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def expected(outcomes: Sequence[Outcome]) -> Outcome:
    """One problem's outcome averaged over orderings of its pool (the first ordering's answer)."""
    k = len(outcomes)
    confidences = [o.confidence for o in outcomes if o.confidence is not None]
    return Outcome(outcomes[0].answer, sum(float(o.correct) for o in outcomes) / k,
                   sum(o.samples for o in outcomes) / k, sum(o.tokens for o in outcomes) / k,
                   sum(o.prm_tokens for o in outcomes) / k,
                   sum(confidences) / len(confidences) if len(confidences) == k else None)


#: Seeded random orderings of each question's pool that every replayed method is averaged
#: over: the pool's first N samples alone are one noisy draw of an N-sample run.
ORDERINGS = 16


def reorder(record: dict, seed: int, ordering: int) -> dict:
    """The record with its samples in the `ordering`-th seeded random order (a shallow copy):
    any order of independently drawn samples is an equally likely run."""
    rng = np.random.default_rng(derive_seed(seed, record["id"], "ordering", ordering))
    samples = record["samples"]
    return {**record, "samples": [samples[i] for i in rng.permutation(len(samples))]}


def _pick(samples: Sequence[dict], how: str) -> dict | None:
    i = select([s["answer"] for s in samples], [_score(s) for s in samples], how)
    return samples[i] if i is not None else None


def _score(sample: dict) -> float:
    return sample["score"] if sample["score"] is not None else float("-inf")


def _outcome(samples: Sequence[dict], how: str, question_tokens: int = 0, uses_prm: bool = True,
             chosen: dict | None = None, confidence: float | None = None) -> Outcome:
    """The choice among `samples` (or the one given) and what drawing (and scoring) them cost.
    Its confidence, unless given, is the chosen sample's calibrated score (see `ConfidenceMap`)."""
    chosen = chosen or _pick(samples, how)
    return Outcome(
        answer=chosen["answer"] if chosen else None,
        correct=bool(chosen["correct"]) if chosen else False,
        samples=len(samples),
        tokens=sum(s["generated_tokens"] for s in samples),
        prm_tokens=(sum(s["prm_tokens"] for s in samples) + question_tokens) if uses_prm else 0,
        confidence=confidence if confidence is not None else (_unit(_score(chosen)) if chosen else 0.0),
    )


def _unit(x: float | None) -> float:
    """A score as a probability: unscored (None, -inf, NaN) is 0, the rest clipped to [0, 1]."""
    return min(max(x, 0.0), 1.0) if x is not None and not math.isnan(x) else 0.0


def lower_bound(record: dict) -> float:
    """The calibrated lowest quantile of the question alone (the paper budgets from the 10% one)."""
    reading = record["question_reading"]
    if reading["quantiles"]:
        return reading["quantiles"][0]
    return UNREAD if reading["score"] is None else reading["score"]


def median(record: dict) -> float:
    """The PRM's score of the question alone (the calibrated median, with a calibrator)."""
    score = record["question_reading"]["score"]
    return UNREAD if score is None else score


def best_of(record: dict, n: int) -> Outcome:
    return _outcome(record["samples"][:n], "best")


def majority_of(record: dict, n: int) -> Outcome:
    return _outcome(record["samples"][:n], "majority", uses_prm=False)


def weighted_of(record: dict, n: int) -> Outcome:
    return _outcome(record["samples"][:n], "weighted")


def ias_bon(record: dict, budget: Budget, p: float | None = None) -> Outcome:
    """Best of N_IAS(p) samples, p the calibrated lower bound of the question unless given."""
    p = lower_bound(record) if p is None else p
    n = n_ias(p, budget.coverage, budget.n_min, budget.n_max)
    return _outcome(record["samples"][:n], "best", record["question_reading"]["prm_tokens"])


def oracle_ias(record: dict, budget: Budget) -> Outcome:
    """N from the problem's true success rate (its share of correct samples in the pool): no
    estimator of p can budget better by the IAS rule; not free of the rule's own limits."""
    samples = record["samples"]
    p = sum(s["correct"] for s in samples) / len(samples)
    n = n_ias(p, budget.coverage, budget.n_min, budget.n_max)
    return _outcome(samples[:n], "best")


def ias_sequential(record: dict, budget: Budget) -> Outcome:
    """Waves until the calibrated chance that at least one finished sample is right (from
    their final-step estimates) reaches C. The first wave has the one-shot size; each later
    wave is as large as the question's lower bound says is still missing: with m the chance
    that every finished sample is wrong, k more samples at p_lo reach C once m (1 - p_lo)^k
    <= 1 - C, i.e. k = N_IAS(p_lo, 1 - (1 - C) / m)."""
    p_lo = lower_bound(record)
    samples = record["samples"]
    n = min(n_ias(p_lo, budget.coverage, budget.n_min, budget.n_max), budget.n_max)
    while n < budget.n_max:
        reached = chance_any_correct([_estimate(s) for s in samples[:n]])
        if reached >= budget.coverage:
            break
        still = 1.0 - (1.0 - budget.coverage) / (1.0 - reached)
        n = min(n + n_ias(p_lo, still, 1, budget.n_max), budget.n_max)
    return _outcome(samples[:n], "best", record["question_reading"]["prm_tokens"])


def _estimate(sample: dict) -> float:
    """A finished sample's calibrated chance of being right: its lowest quantile at the last step."""
    if sample.get("quantiles"):
        return sample["quantiles"][0]
    return max(0.0, sample["score"]) if sample["score"] is not None else 0.0


def fleet(records: Sequence[dict], budget: Budget, total: int) -> list[Outcome]:
    """`total` samples shared by all problems to maximise the expected number solved."""
    sizes = fleet_allocation([lower_bound(r) for r in records], total, budget.n_min, budget.n_max)
    return [_outcome(r["samples"][:n], "best", r["question_reading"]["prm_tokens"]) for r, n in zip(records, sizes)]


def adaptive_consistency(record: dict, budget: Budget) -> Outcome:
    """One sample at a time until the Beta/Dirichlet posterior is sure of the leading answer."""
    samples = record["samples"]
    answers = [answer_key(s["answer"]) for s in samples]
    n = next((k for k in range(1, len(samples) + 1) if adaptive_consistency_stop(answers[:k], budget.ac_threshold)),
             len(samples))
    return _outcome(samples[:n], "majority", uses_prm=False)


def early_stopping_sc(record: dict, budget: Budget) -> Outcome:
    """Windows of `esc_window` samples until one window agrees on one answer."""
    samples = record["samples"]
    w = budget.esc_window
    n = len(samples)
    for end in range(w, len(samples) + 1, w):
        if esc_window_stop([answer_key(s["answer"]) for s in samples[end - w : end]]):
            n = end
            break
    return _outcome(samples[:n], "majority", uses_prm=False)


def deepconf(record: dict, budget: Budget) -> Outcome:
    """DeepConf-style online early exit: warm-up traces set a threshold on the lowest windowed
    token confidence; later traces stop at the first window below it (tokens counted up to
    there) and are left out of the vote."""
    samples = record["samples"]
    warm = samples[: budget.deepconf_warmup]
    threshold = deepconf_threshold(
        [lowest_window_confidence(s["logprobs"], budget.deepconf_window) if s["logprobs"] else 0.0 for s in warm],
        budget.deepconf_keep,
    )
    kept, tokens = list(warm), sum(s["generated_tokens"] for s in warm)
    for s in samples[budget.deepconf_warmup :]:
        stop = first_exit(s["logprobs"], threshold, budget.deepconf_window) if s["logprobs"] else None
        if stop is None:
            kept.append(s)
            tokens += s["generated_tokens"]
        else:
            tokens += stop + 1
    chosen = _pick(kept, "majority")
    return Outcome(chosen["answer"] if chosen else None, bool(chosen and chosen["correct"]), len(samples), tokens, 0,
                   _unit(_score(chosen)) if chosen else 0.0)


# --- ias-adaptive ----------------------------------------------------------------------


class ConfidenceMap:
    """The chance that a best-scored answer is right, from its calibrated score: the chosen
    sample is the top one of several, so its own score runs high; an isotonic map fitted on
    a tuning pool's choices (never the evaluated problems') corrects that. Unfitted, the
    score itself. A live run computes it from the same calibrated scores."""

    def __init__(self, fitted: IsotonicRegression | None = None):
        self.fitted = fitted

    def __call__(self, scores: Sequence[float]) -> np.ndarray:
        values = np.asarray([_unit(x) for x in scores], dtype=float)
        return self.fitted.predict(values) if self.fitted else values

    def to_dict(self) -> dict:
        return self.fitted.to_dict() if self.fitted else {"method": "identity"}

    @classmethod
    def fit(cls, views: Sequence[PrefixView]) -> ConfidenceMap:
        """Fitted on every prefix of every (reordered) tuning record: chosen score -> right."""
        x = np.concatenate([v.chosen_score for v in views])
        y = np.concatenate([v.chosen_correct for v in views]).astype(float)
        return cls(IsotonicRegression().fit(x, y))


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
    return Readings(confidence(view.chosen_score), np.cumsum(confidence(view.scores)))


def prefix_view(record: dict, score_key: str = "score") -> PrefixView:
    """The record's `PrefixView`, reading each sample's `score_key` (`raw_score`: the raw PRM)."""
    samples = record["samples"]
    scores = [s[score_key] if s[score_key] is not None else float("-inf") for s in samples]
    chosen = best_by_prefix([s["answer"] for s in samples], scores)
    return PrefixView(chosen, np.array([_unit(scores[i]) for i in chosen]),
                      np.array([bool(samples[i]["correct"]) for i in chosen]),
                      np.array([_unit(x) for x in scores]), np.cumsum([s["generated_tokens"] for s in samples]))


def adaptive_size(view: PrefixView, readings: Readings, question: float, settings: AdaptiveSettings,
                  n_max: int) -> int:
    """How many samples `ias-adaptive` draws, wave by wave, deciding each time only from the
    finished samples (`adaptive_wave`)."""
    n_max = min(n_max, len(view.chosen))
    n, more = 0, adaptive_wave(question, 0, 0.0, 0.0, 0.0, settings, n_max)
    while more:
        n = min(n + more, n_max)
        more = adaptive_wave(question, n, float(readings.confidence[n - 1]), float(readings.chance_sum[n - 1]),
                             float(view.token_sum[n - 1]) / n, settings, n_max)
    return n


def ias_adaptive(record: dict, budget: Budget, settings: AdaptiveSettings, confidence: ConfidenceMap,
                 view: PrefixView | None = None, question: float | None = None) -> Outcome:
    """`ias-adaptive` on one (reordered) record: waves until the chosen answer is confident
    enough or one more sample is not worth its tokens; best-scored answer of those drawn,
    with its confidence. `question` and a view of `raw_score`s: the same rule uncalibrated."""
    view = view or prefix_view(record)
    readings = read_view(view, confidence)
    n = adaptive_size(view, readings, median(record) if question is None else question, settings, budget.n_max)
    samples = record["samples"]
    return _outcome(samples[:n], "best", record["question_reading"]["prm_tokens"], chosen=samples[view.chosen[n - 1]],
                    confidence=float(readings.confidence[n - 1]))


#: The settings `ias-adaptive` is tuned over (on the tuning split's pool).
TARGETS = (0.8, 0.9, 0.95)
PRICES = (0.0001, 0.00015, 0.0002, 0.0003, 0.0004, 0.0005, 0.0006, 0.0008, 0.001, 0.0012, 0.0015, 0.002, 0.003, 0.005)
WAVES = (1, 2, 4)
PRIORS = (1.0, 2.0, 4.0, 8.0)
#: Mean samples per question that `ias-adaptive@B` and `oracle-alloc@B` spend.
MEAN_BUDGETS = (2, 4, 8, 16, 32)


def adaptive_grid(views: Sequence[Sequence[PrefixView]], records: Sequence[Sequence[dict]], budget: Budget,
                  confidence: ConfidenceMap) -> list[dict]:
    """Every setting's accuracy, mean samples per question and tokens on reordered records
    (`records[k][i]`: ordering k of question i), expected over the orderings."""
    confs = [[read_view(v, confidence) for v in row] for row in views]
    questions = [median(r) for r in records[0]]
    grid = []
    for target, price, wave, prior in itertools.product(TARGETS, PRICES, WAVES, PRIORS):
        settings = AdaptiveSettings(target, price, wave, prior)
        right = samples = tokens = 0.0
        for row, conf_row in zip(views, confs):
            for v, conf, q in zip(row, conf_row, questions):
                n = adaptive_size(v, conf, q, settings, budget.n_max)
                right += float(v.chosen_correct[n - 1])
                samples += n
                tokens += float(v.token_sum[n - 1])
        k = len(views) * len(questions)
        grid.append({**asdict(settings), "accuracy": round(right / k, 4), "samples": round(samples / k, 3),
                     "tokens": round(tokens / len(views), 1)})
    return grid


def choose_settings(grid: Sequence[dict], tolerance: float, one_sample_tokens: float) -> dict:
    """`ias-adaptive`'s settings: the cheapest (tokens) within `tolerance` of the most accurate;
    `ias-adaptive@B`: the most accurate spending at most the tokens of fixed N = B
    (`one_sample_tokens`: fixed N = 1's expected tokens on the same pool), so the two are
    compared at equal compute (the cheapest setting if none is that cheap)."""
    top = max(g["accuracy"] for g in grid)
    main = min((g for g in grid if g["accuracy"] >= top - tolerance), key=lambda g: g["tokens"])
    by_budget = {}
    for b in MEAN_BUDGETS:
        within = [g for g in grid if g["tokens"] <= b * one_sample_tokens]
        by_budget[b] = (max(within, key=lambda g: (g["accuracy"], -g["tokens"])) if within
                        else min(grid, key=lambda g: g["tokens"]))
    keys = [f.name for f in fields(AdaptiveSettings)]
    return {"settings": {k: main[k] for k in keys},
            "by_budget": {str(b): {k: g[k] for k in keys} for b, g in by_budget.items()}}


def selected_curves(views: Sequence[Sequence[PrefixView]]) -> list[list[float]]:
    """Each question's true curve: the chance the best-scored of its first n samples is right,
    n = 1 .. pool size, expected over the orderings (`views[k][i]`)."""
    return [np.mean([row[i].chosen_correct for row in views], axis=0).tolist() for i in range(len(views[0]))]


def oracle_alloc(records: Sequence[dict], views: Sequence[PrefixView], sizes: Sequence[int]) -> list[Outcome]:
    """`oracle-alloc` on one ordering: question i gets `sizes[i]` samples (from the true curves)."""
    return [_outcome(r["samples"][:n], "best", chosen=r["samples"][v.chosen[n - 1]])
            for r, v, n in zip(records, views, sizes)]


PER_PROBLEM: dict[str, Callable[[dict, Budget], Outcome]] = {
    "ias-bon": ias_bon,
    "ias-seq": ias_sequential,
    "oracle-ias": oracle_ias,
    "adaptive-consistency": adaptive_consistency,
    "esc": early_stopping_sc,
    "deepconf": deepconf,
}
