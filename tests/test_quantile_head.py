"""The quantile-head calibrator on real rollouts of the weak policy and the shipped zoo PRM."""

import numpy as np
import pytest
import torch

from ias.calibration.quantile_head import (
    QuantileHead,
    fit_quantile_head,
    pinball,
    prm_readings,
    split_by_problem,
)
from ias.calibration.rollout import rollout
from ias.calibration.store import load_targets
from ias.errors import UserError
from ias.prm.base import load_prm
from ias.specs import RolloutSettings


@pytest.fixture(scope="module")
def data(tmp_path_factory, zoo_prm):
    out = tmp_path_factory.mktemp("rollouts")
    rollout(
        "arith",
        "calib",
        "arith-weak",
        RolloutSettings(n_traj=4, n_mc=4, max_prefix=20),
        out=out,
        seed=0,
        limit=40,
        batch_problems=40,
        progress=False,
    )
    rows = load_targets(out)
    score, hidden, _, kept = prm_readings(zoo_prm, rows)
    rows = [rows[k] for k in kept]
    return rows, score, hidden, np.array([r.p for r in rows], dtype=np.float32)


def test_readings_match_scoring_each_prefix_alone(data, zoo_prm):
    rows, score, hidden, _ = data
    picked = [0, 1, len(rows) // 2, len(rows) - 1]
    alone = zoo_prm.score([(rows[i].question, rows[i].steps) for i in picked], hidden=True)
    for i, reading in zip(picked, alone):
        assert score[i] == pytest.approx(reading.scores[-1], abs=1e-5)
        assert np.allclose(hidden[i], reading.hidden[-1], atol=1e-4)


def test_a_trajectory_too_long_for_the_prm_keeps_the_rows_that_fit(data):
    """With a PRM context shorter than the long trajectories, every row whose own prefix fits
    is still read (each alone), with the reading scoring that prefix alone gives."""
    rows = data[0]
    short = load_prm("arith-prm", max_length=40)
    fits = [len(short.encode(r.question, r.steps)[0]) <= 40 for r in rows]
    assert 0 < sum(fits) < len(rows)
    score, _, _, kept = prm_readings(short, rows, hidden=False)
    assert kept == [k for k, ok in enumerate(fits) if ok]
    alone = short.score([(rows[k].question, rows[k].steps) for k in kept])
    assert np.allclose(score, [a.scores[-1] for a in alone], atol=1e-5)


def test_fit_moves_quantiles_toward_the_targets_without_crossing(data):
    rows, score, hidden, p = data
    levels = torch.tensor([0.1, 0.5, 0.9])
    untrained = QuantileHead(hidden.shape[1])
    start = untrained.predict(score, hidden)
    assert np.allclose(start, score[:, None], atol=1e-3)  # before fitting: the PRM's own probability
    head = fit_quantile_head(score, hidden, p)
    q = head.predict(score, hidden)
    assert (np.diff(q, axis=1) >= 0).all()
    before = pinball(torch.tensor(start), torch.tensor(p), levels).item()
    after = pinball(torch.tensor(q), torch.tensor(p), levels).item()
    assert after < 0.8 * before
    below = (p[:, None] < q).mean(axis=0)
    assert below[0] < below[1] < below[2]  # more targets under higher quantiles


def test_save_and_load_give_the_same_predictions(data, tmp_path):
    _, score, hidden, p = data
    head = fit_quantile_head(score, hidden, p, epochs=50)
    head.save(tmp_path)
    again = QuantileHead.load(tmp_path)
    assert again.levels == head.levels
    assert np.array_equal(again.predict(score, hidden), head.predict(score, hidden))
    with pytest.raises(UserError):
        QuantileHead.load(tmp_path / "nowhere")


def test_split_is_by_problem(data):
    rows = data[0]
    fit, held = split_by_problem(rows, 0.25, seed=0)
    assert sorted(fit + held) == list(range(len(rows)))
    assert not {rows[i].problem_id for i in fit} & {rows[i].problem_id for i in held}
    assert len({rows[i].problem_id for i in held}) == 10


@pytest.mark.parametrize("levels", [(0.5, 0.1), (0.1, 0.1), (0.0, 0.5), (0.5, 1.0)])
def test_bad_levels_are_refused(levels):
    with pytest.raises(UserError):
        QuantileHead(4, levels)
