"""The built-in arith task: deterministic, disjoint splits, checkable reference solutions."""

import re

import pytest

from ias.errors import UserError
from ias.tasks.arith import OPS, make_arith, solve_steps
from ias.tasks.base import get_task
from ias.types import split_steps

STEP = re.compile(r"^(\d+)([-+*])(\d+)=(\d+)(?: so ([\d+*-]+))?$")


def test_splits_are_deterministic_and_disjoint():
    task = get_task("arith")
    test, calib = task.problems("test"), task.problems("calib")
    assert [p.question for p in test] == [p.question for p in make_arith().problems("test")]
    assert len(test) == 500 and len(calib) == 500
    assert len({p.question for p in test}) == len(test)
    assert not {p.question for p in test} & {p.question for p in calib}
    train = {p.question for p in task.problems("train", 20000)}
    assert not train & ({p.question for p in test} | {p.question for p in calib})
    assert len({p.id for p in test + calib}) == 1000


def test_every_reference_step_is_one_correct_operation():
    task = get_task("arith")
    for problem in task.problems("test"):
        steps = split_steps(problem.solution)
        assert len(steps) == problem.meta["steps"] == problem.meta["ops"] + 1
        assert steps[-1] == f"\\boxed{{{problem.answer}}}"
        for step in steps[:-1]:
            a, op, b, value, _ = STEP.match(step).groups()
            assert OPS[op](int(a), int(b)) == int(value) >= 0
        expression = problem.question[len("Compute ") : -1]
        assert eval(expression) == int(problem.answer)  # our own generated text, not model output
        assert task.grade(problem, problem.solution)
        assert not task.grade(problem, problem.solution.replace(f"{{{problem.answer}}}", "{-1}"))


def test_difficulty_knobs_and_fresh_problems():
    easy = get_task("arith", max_ops=1, digits=1, operators="+")
    for p in easy.problems("test", 50):
        assert p.meta["ops"] == 1 and p.meta["digits"] == 1 and "+" in p.question
        assert "*" not in p.question and "-" not in p.question
    fresh = get_task("arith").problems("seed:7", 20)
    again = get_task("arith").problems("seed:7", 20)
    assert [p.question for p in fresh] == [p.question for p in again]
    assert [p.question for p in fresh] != [p.question for p in get_task("arith").problems("seed:8", 20)]


def test_negative_intermediates_are_redrawn():
    assert solve_steps([3, "-", 5, "+", 9]) is None
    assert solve_steps([2, "+", 3, "*", 4]) == ["3*4=12 so 2+12", "2+12=14", "\\boxed{14}"]


@pytest.mark.parametrize(
    "options",
    [{"max_ops": 0}, {"digits": 0}, {"operators": "/"}, {"colour": "red"}],
)
def test_bad_knobs_are_user_errors(options):
    with pytest.raises(UserError):
        get_task("arith", **options)


def test_unknown_split_is_a_user_error():
    with pytest.raises(UserError, match="no split"):
        get_task("arith").problems("validation")
    with pytest.raises(UserError, match="seed:N"):
        get_task("arith").problems("seed:x")


def test_options_with_too_few_distinct_questions_are_a_user_error_not_a_hang():
    """1 op of 1-digit numbers allows ~250 questions: `test` (500) cannot be filled, so
    neither can `calib`, which must avoid all of it. A few problems of `test` still work."""
    task = get_task("arith", max_ops=1, digits=1)
    assert len({p.question for p in task.problems("test", 6)}) == 6
    with pytest.raises(
        UserError,
        match=r"too few distinct questions for split 'test': found 2\d\d of 500 beside "
        r"the 0 of the splits before it; .*seed:N",
    ):
        task.problems("calib", 6)
    assert len(task.problems("seed:1", 600)) == 600  # a seed:N split is a stream: repeats allowed
