"""Choosing one answer from many samples: best PRM score, majority vote, PRM-weighted vote."""

from __future__ import annotations

import math
from collections import defaultdict
from functools import lru_cache
from typing import Callable, Sequence

from ias.errors import UserError
from ias.tasks.answers import normalize_answer, parse_number

AGGREGATIONS: dict[str, Callable[[Sequence[float]], float]] = {
    "last": lambda s: s[-1],
    "min": min,
    "prod": math.prod,
    "mean": lambda s: sum(s) / len(s),
}
SELECTIONS = ("best", "majority", "weighted")


def aggregate(step_scores: Sequence[float] | None, how: str) -> float:
    """One score for a solution from its step scores; unscored or NaN solutions get -inf."""
    if how not in AGGREGATIONS:
        raise UserError(f"unknown aggregation '{how}'; known: {', '.join(AGGREGATIONS)}")
    if not step_scores or any(math.isnan(s) for s in step_scores):
        return -math.inf
    return float(AGGREGATIONS[how](step_scores))


@lru_cache(maxsize=1 << 16)
def answer_key(answer: str | None) -> str | None:
    """The form under which two answers count as the same vote (`1.0`, `1` and `\\frac{2}{2}` agree)."""
    if answer is None:
        return None
    normal = normalize_answer(answer)
    value = parse_number(normal)
    return normal if value is None else str(value)


def select(answers: Sequence[str | None], scores: Sequence[float], how: str) -> int | None:
    """The index of the chosen sample, or None when there are no samples.

    best: highest score (first on ties). majority: most frequent answer, ties to the one
    seen first. weighted: answer with the largest sum of scores. A sample without an
    answer cannot be right, so under every rule it wins only if no sample has one.
    """
    if how not in SELECTIONS:
        raise UserError(f"unknown selection '{how}'; known: {', '.join(SELECTIONS)}")
    if not answers:
        return None
    if how == "best":
        return best_by_prefix(answers, scores)[-1]
    weight: dict[str, float] = defaultdict(float)
    first: dict[str, int] = {}
    for i, answer in enumerate(answers):
        key = answer_key(answer)
        if key is None:
            continue
        first.setdefault(key, i)
        s = scores[i]
        weight[key] += 1.0 if how == "majority" else (s if math.isfinite(s) else 0.0)
    if not weight:
        return 0
    winner = max(weight, key=lambda k: (weight[k], -first[k]))
    if how == "majority":
        return first[winner]
    # Within the winning answer, report its best-scored sample.
    members = [i for i, a in enumerate(answers) if answer_key(a) == winner]
    return max(members, key=lambda i: (scores[i], -i))


def best_by_prefix(answers: Sequence[str | None], scores: Sequence[float]) -> list[int]:
    """The "best" choice among the first k + 1 samples, for every k, in one pass: highest
    score, first on ties, a sample with an answer before one without. A sequential method
    reads its choice after every wave from this without re-selecting."""
    chosen: list[int] = []
    top = None
    for i, (answer, score) in enumerate(zip(answers, scores)):
        key = (answer is not None, score)
        if top is None or key > top:
            top, best = key, i
        chosen.append(best)
    return chosen
