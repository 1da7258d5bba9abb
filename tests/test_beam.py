"""Step-level beam search on the real zoo policy and PRM: the widths it keeps follow its rules
(fixed K x M, or IAS-of-K / IAS-of-M on the one statistic), its answer is the best finished
candidate, and its records depend only on the seed, not on the batch."""

from __future__ import annotations

import pytest

from ias.api import _policy, _prm, sampling_params
from ias.errors import UserError
from ias.prm.base import StepScores
from ias.scaling.beam import BeamSearch
from ias.scaling.budget import ias_of_k, ias_of_m, n_ias
from ias.scaling.select import answer_key
from ias.tasks.base import get_task
from ias.types import split_steps


@pytest.fixture(scope="module")
def parts():
    task, policy = get_task("arith"), _policy("arith-weak")
    return task, policy, _prm("arith-prm", None), sampling_params(policy), task.problems("test", 3)


def test_fixed_beam_keeps_k_beams_of_m_samples_and_answers_with_its_best_finished(parts):
    task, policy, prm, params, problems = parts
    records = BeamSearch(n_init=6, k_max=2, m_max=3).run(problems, task, policy, prm, params, seed=3)
    for problem, record in zip(problems, records):
        rounds = record["rounds"]
        assert rounds[0]["candidates"] == 6
        for before, after in zip(rounds, rounds[1:]):
            assert after["candidates"] == before["kept"] * before["per_beam"]
        for r in rounds:
            assert r["kept"] == min(2, len(r.get("open_stats", []))) and r["per_beam"] in (0, 3)
            assert r.get("open_stats", []) == sorted(r.get("open_stats", []), reverse=True)
        assert rounds[-1]["kept"] == 0  # the search ends when no beam is left open
        finished = record["finished"]
        assert len(finished) == sum(r["candidates"] - len(r.get("open_stats", [])) for r in rounds)
        best = max(finished, key=lambda c: (c["answer"] is not None, c["stat"]))
        assert record["answer"] == best["answer"] and record["correct"] == best["correct"]
        # Its confidence: the PRM's reading of the chosen solution at its last step.
        [reading] = prm.score([(problem.question, split_steps(best["text"]))])
        assert record["confidence"] == pytest.approx(reading.scores[-1], abs=1e-5)
        for c in finished:  # graded as the task grades the written solution
            assert c["correct"] == task.grade(problem, c["text"])
            assert answer_key(c["answer"]) == answer_key(task.extract(c["text"]))
        usage = record["usage"]
        assert usage["samples"] == sum(r["candidates"] for r in rounds)
        assert usage["generated_tokens"] > 0 and usage["prm_tokens"] > 0
        assert record["lower_t0"] is None


def test_adaptive_beam_sizes_follow_ias_of_k_and_m(parts):
    task, policy, prm, params, problems = parts
    search = BeamSearch(n_init=12, k_max=3, m_max=4, adaptive=True, coverage=0.9, n_max=12)
    records = search.run(problems, task, policy, prm, params, seed=3)
    for record in records:
        rounds = record["rounds"]
        assert rounds[0]["candidates"] == n_ias(record["lower_t0"], 0.9, 1, 12)
        for r in rounds:
            if r["kept"]:
                k = ias_of_k(r["open_stats"], 3, 4, 0.9, 12)
                assert r["kept"] == k and r["per_beam"] == ias_of_m(r["open_stats"][:k], 4, 0.9, 12)
        for before, after in zip(rounds, rounds[1:]):
            assert after["candidates"] == before["kept"] * before["per_beam"]


def test_records_depend_on_the_seed_not_the_batch(parts):
    task, policy, prm, params, problems = parts
    search = BeamSearch(n_init=4, k_max=2, m_max=2, freq=2, max_rounds=3)
    together = search.run(problems, task, policy, prm, params, seed=11)
    alone = [search.run([p], task, policy, prm, params, seed=11)[0] for p in problems[:2]]
    assert alone == together[:2]
    other = search.run(problems[:2], task, policy, prm, params, seed=12)
    assert [r["finished"] for r in other] != [r["finished"] for r in together[:2]]


def test_last_round_continues_beams_to_the_end(parts):
    task, policy, prm, params, problems = parts
    records = BeamSearch(n_init=3, k_max=3, m_max=1, max_rounds=1).run(problems, task, policy, prm, params, seed=0)
    for record in records:  # one round only: every sample ran to the end of its solution
        assert len(record["rounds"]) == 1 and len(record["finished"]) == 3


def test_bad_settings_are_user_errors(parts):
    task, policy, _, params, problems = parts
    with pytest.raises(UserError, match="k_max >= 1"):
        BeamSearch(k_max=0)
    with pytest.raises(UserError, match="coverage"):
        BeamSearch(coverage=1.0)
    with pytest.raises(UserError, match="needs a PRM"):
        BeamSearch().run(problems[:1], task, policy, None, params, seed=0)


def test_one_statistic_lower_quantile_when_adaptive_else_the_score():
    calibrated = StepScores(scores=[0.3, 0.6], quantiles=[[0.1, 0.3, 0.5], [0.2, 0.6, 0.9]])
    assert BeamSearch(adaptive=True)._statistic(calibrated) == 0.2
    assert BeamSearch()._statistic(calibrated) == 0.6
    assert BeamSearch(adaptive=True)._statistic(StepScores(scores=[0.7])) == 0.7  # uncalibrated: the score
    for unreadable in (StepScores(skipped="too long"), StepScores(scores=[float("nan")])):
        assert BeamSearch()._statistic(unreadable) == 0.0


def test_a_step_stating_the_answer_finishes_its_candidate_even_if_the_model_writes_on():
    """Models such as SmolLM2 write more steps after `\\boxed{}`; a beam ends at its answer."""
    from ias.scaling.beam import _Candidate, _child
    from ias.types import STEP_DELIMITER, Sample

    task = get_task("arith")
    problem = task.problems("test", 1)[0]
    parent = _Candidate(["1+1=2"], False)
    step = _child(task, problem, parent, Sample("2+3=5", 10, 5, "stop", stop=STEP_DELIMITER))
    assert not step.finished and step.steps == ["1+1=2", "2+3=5"]
    right = _child(task, problem, parent, Sample(f"\\boxed{{{problem.answer}}}", 10, 5, "stop", stop=STEP_DELIMITER))
    assert right.finished and right.answer == problem.answer and right.correct
    assert right.text == f"1+1=2{STEP_DELIMITER}\\boxed{{{problem.answer}}}"
    ended = _child(task, problem, parent, Sample("2+3=5", 10, 5, "eos"))
    assert ended.finished and ended.answer is None and not ended.correct
