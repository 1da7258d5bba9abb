"""The zoo: training is reproducible, the shipped PRM verifies steps, MC targets are sound."""

import dataclasses
import random

import pytest
from safetensors.torch import load_file

from ias.calibration.montecarlo import prefix_targets, sample_trajectories
from ias.metrics import auroc
from ias.policy.base import SamplingParams
from ias.policy.hf import HFPolicy
from ias.prm.hf import HFPRM
from ias.tasks.arith import make_arith
from ias.types import split_steps
from ias.zoo.specs import SPECS
from ias.zoo.train_policy import train_policy
from ias.zoo.train_prm import garble, plant_error, train_prm


@pytest.fixture(scope="module")
def task():
    return make_arith()


def test_policy_training_is_reproducible(tmp_path):
    spec = dataclasses.replace(SPECS["arith-weak"], steps=15, batch=16)
    train_policy(spec, tmp_path / "a", progress=False)
    train_policy(spec, tmp_path / "b", progress=False)
    a, b = (load_file(str(tmp_path / x / "model.safetensors")) for x in "ab")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    other = dataclasses.replace(spec, seed=spec.seed + 1)
    train_policy(other, tmp_path / "c", progress=False)
    c = load_file(str(tmp_path / "c" / "model.safetensors"))
    assert any((a[k] != c[k]).any() for k in a)


def test_prm_training_pipeline_writes_a_loadable_prm(tmp_path):
    spec = dataclasses.replace(SPECS["arith-prm"], problems=12, verify_problems=20, n_traj=2, n_mc=2, steps=3, batch=8)
    result = train_prm(spec, tmp_path / "prm", policy_path="arith-weak", progress=False)
    assert result["examples"] > 24 + 20  # trajectories, planted and malformed copies, t=0 rows, references
    prm = HFPRM(str(tmp_path / "prm"))
    [reading] = prm.score([("Compute 1+2.", ["1+2=3", "\\boxed{3}"])])
    assert len(reading.scores) == 2 and reading.skipped is None


def test_planted_errors_are_wrong_and_continue_consistently(task):
    rng = random.Random(0)
    for problem in task.problems("test", 200):
        steps = split_steps(problem.solution)
        planted, k = plant_error(steps, rng)
        assert planted[:k] == steps[:k] and planted[k] != steps[k]
        assert planted[-1].startswith("\\boxed{")
        broken = garble(steps, rng)
        if broken is not None:
            assert broken[0][-1] != steps[broken[1]] and "\n\n" not in broken[0][-1]


def test_shipped_prm_verifies_steps_not_just_difficulty(task):
    """Reference solutions against the same solutions with one planted mistake."""
    prm = HFPRM("arith-prm")
    rng = random.Random(1)
    items, labels = [], []
    for problem in task.problems("test", 200):
        steps = split_steps(problem.solution)
        items += [(problem.question, steps), (problem.question, plant_error(steps, rng)[0])]
        labels += [True, False]
    finals = [r.scores[-1] for r in prm.score(items)]
    assert auroc(finals, labels) >= 0.9


def test_monte_carlo_targets(task):
    policy = HFPolicy("arith-weak")
    params = SamplingParams(temperature=1.0, max_tokens=120)
    problems = task.problems("test", 4)
    trajectories = [t for g in sample_trajectories(policy, task, problems, 2, params, 5) for t in g]
    targets, usage = prefix_targets(policy, task, trajectories, 3, 20, params, 5)
    for tr in trajectories:
        mine = sorted((t for t in targets if t.problem_id == tr.problem.id and t.traj == tr.index), key=lambda t: t.t)
        assert [t.t for t in mine] == list(range(len(tr.steps) + 1))
        assert mine[-1].n == 1 and mine[-1].correct == int(tr.correct)  # t = T: the trajectory itself
        assert all(t.n == 3 and 0 <= t.correct <= 3 for t in mine[:-1])
        assert all(t.steps == tr.steps[: t.t] for t in mine)
    jobs = sum(len(tr.steps) for tr in trajectories)
    assert usage.samples == 3 * jobs
    again, _ = prefix_targets(policy, task, trajectories, 3, 20, params, 5)
    assert [(t.t, t.correct) for t in again] == [(t.t, t.correct) for t in targets]


def test_likelihood_features_flag_a_miscalculated_digit():
    """The zoo PRM's surprise features: near 0 for a right step, very negative for a wrong one,
    blind to the question's own digits and to the tags."""
    import torch

    from ias.prm.format import FORMATS, prm_input

    prm = HFPRM("arith-prm")
    features = {}
    for steps in (["5+3=8", "\\boxed{8}"], ["5+3=9", "\\boxed{9}"], []):
        ids, tags = prm_input(FORMATS["zoo"], prm.tokenizer, "Compute 5+3.", steps)
        x = torch.tensor([ids])
        with torch.no_grad():
            hidden = prm.model.model(input_ids=x).last_hidden_state
            so_far, in_step = prm.model.surprise(x, hidden, None)
        features[len(steps) and steps[0]] = (so_far[0, tags].tolist(), in_step[0, tags].tolist())
    right, wrong, question = features["5+3=8"], features["5+3=9"], features[0]
    assert min(right[0]) > -1.0 and question == ([0.0], [0.0])
    assert wrong[0][0] < -5.0 and wrong[0][1] == wrong[0][0]  # the mistake stays in "so far"
    assert wrong[1][0] < -5.0 and wrong[1][1] > -1.0  # ... but not in the next step's own minimum
