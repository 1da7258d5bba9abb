"""Selection and aggregation rules on hand-made cases."""

import math

import pytest

from ias.errors import UserError
from ias.scaling.select import aggregate, select


def test_aggregations():
    s = [0.9, 0.5, 0.8]
    assert aggregate(s, "last") == 0.8
    assert aggregate(s, "min") == 0.5
    assert aggregate(s, "prod") == pytest.approx(0.36)
    assert aggregate(s, "mean") == pytest.approx(2.2 / 3)
    assert aggregate([], "last") == -math.inf
    assert aggregate(None, "min") == -math.inf
    assert aggregate([0.5, float("nan")], "mean") == -math.inf
    with pytest.raises(UserError):
        aggregate(s, "median-ish")


def test_best_majority_weighted_disagree_when_they_should():
    answers = ["7", "7", "8", None]
    scores = [0.2, 0.3, 0.9, 0.95]
    assert select(answers, scores, "best") == 2  # the unanswered sample scores higher but cannot be right
    assert select([None, None], [0.1, 0.9], "best") == 1
    assert select(answers, scores, "majority") == 0
    # weighted: "7" sums to 0.5, "8" to 0.9; the unanswered sample casts no vote
    assert select(answers, scores, "weighted") == 2
    assert select(["1", "2"], [0.5, 0.5], "best") == 0  # ties go to the first
    assert select(["2", "1.0", "1"], [0.1, 0.2, 0.3], "majority") == 1  # "1.0" and "1" are one vote
    assert select([], [], "best") is None
    assert select([None, None], [0.1, 0.2], "majority") == 0
    with pytest.raises(UserError):
        select(answers, scores, "random")


def test_unscored_samples_never_win_best():
    assert select(["1", "2"], [-math.inf, 0.01], "best") == 1
