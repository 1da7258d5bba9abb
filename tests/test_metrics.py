"""Statistics checked against brute force."""

import itertools
import random

from ias.metrics import auroc, bootstrap_ci, histogram


def test_auroc_matches_pairwise_definition():
    rng = random.Random(0)
    scores = [round(rng.random(), 1) for _ in range(60)]  # many ties
    labels = [rng.random() < 0.4 for _ in range(60)]
    pairs = [
        (p, n)
        for p, n in itertools.product(
            [s for s, y in zip(scores, labels) if y], [s for s, y in zip(scores, labels) if not y]
        )
    ]
    brute = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)
    assert abs(auroc(scores, labels) - brute) < 1e-12
    assert auroc([0.1, 0.9], [False, True]) == 1.0
    assert auroc([0.1, 0.9], [True, True]) != auroc([0.1, 0.9], [True, True])  # NaN with one class


def test_histogram_and_bootstrap():
    h = histogram([0.0, 0.05, 0.5, 1.0, 1.0])
    assert h["edges"][0] == 0.0 and h["edges"][-1] == 1.0 and len(h["counts"]) == 10
    assert h["counts"][0] == 2 and h["counts"][5] == 1 and h["counts"][9] == 2
    lo, hi = bootstrap_ci([0, 1] * 50)
    assert lo < 0.5 < hi and hi - lo < 0.3
