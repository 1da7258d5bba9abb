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

from dataclasses import asdict, dataclass
from typing import Callable, Sequence

from ias.scaling.budget import (
    UNREAD, adaptive_consistency_stop, chance_any_correct, deepconf_threshold, esc_window_stop, first_exit,
    fleet_allocation, lowest_window_confidence, n_ias,
)
from ias.scaling.select import answer_key, select


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
    answer: str | None
    correct: bool
    samples: int
    tokens: int
    prm_tokens: int

    def to_dict(self) -> dict:
        return asdict(self)


def _pick(samples: Sequence[dict], how: str) -> dict | None:
    i = select([s["answer"] for s in samples], [_score(s) for s in samples], how)
    return samples[i] if i is not None else None


def _score(sample: dict) -> float:
    return sample["score"] if sample["score"] is not None else float("-inf")


def _outcome(samples: Sequence[dict], how: str, question_tokens: int = 0, uses_prm: bool = True) -> Outcome:
    """The choice among `samples` and what drawing (and scoring) them cost."""
    chosen = _pick(samples, how)
    return Outcome(
        answer=chosen["answer"] if chosen else None,
        correct=bool(chosen["correct"]) if chosen else False,
        samples=len(samples),
        tokens=sum(s["generated_tokens"] for s in samples),
        prm_tokens=(sum(s["prm_tokens"] for s in samples) + question_tokens) if uses_prm else 0,
    )


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
    return Outcome(chosen["answer"] if chosen else None, bool(chosen and chosen["correct"]), len(samples), tokens, 0)


PER_PROBLEM: dict[str, Callable[[dict, Budget], Outcome]] = {
    "ias-bon": ias_bon,
    "ias-seq": ias_sequential,
    "oracle-ias": oracle_ias,
    "adaptive-consistency": adaptive_consistency,
    "esc": early_stopping_sc,
    "deepconf": deepconf,
}
