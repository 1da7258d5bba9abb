"""The step-level methods (beam, ias-beam, particle-filtering) on the real zoo policy and PRM,
driven by the engine: the widths they keep follow their rules, their answers are their best
finished candidates and depend only on the seed, and what they spent is what the source
returned."""

from __future__ import annotations

from collections import defaultdict

import pytest

from ias.errors import UserError
from ias.loaders import sampling_params
from ias.methods import make_method
from ias.methods.base import Extend, Question, ReadQuestion, ReadSteps, unit
from ias.methods.engine import run_method
from ias.methods.sources import LiveSource
from ias.methods.steps import Partial, grow, last_score, statistic
from ias.policy.base import derive_seed
from ias.prm.base import StepScores
from ias.scaling.budget import ias_of_k, ias_of_m, n_ias
from ias.tasks.base import get_task
from ias.types import STEP_DELIMITER, Sample, split_steps


class RecordingSource(LiveSource):
    """The live source, keeping each question's requests and what they returned, in order."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.log: dict[str, list[tuple]] = defaultdict(list)

    def read_questions(self, questions):
        out = super().read_questions(questions)
        for question, reading in zip(questions, out):
            self.log[question.id].append((ReadQuestion(), reading))
        return out

    def extend(self, asks):
        out = super().extend(asks)
        for (question, ask), groups in zip(asks, out):
            self.log[question.id].append((ask, groups))
        return out

    def read_steps(self, asks):
        out = super().read_steps(asks)
        for (question, ask), readings in zip(asks, out):
            self.log[question.id].append((ask, readings))
        return out


@pytest.fixture(scope="module")
def parts(arith, zoo_policy, zoo_prm):
    questions = [Question(p, arith.extract) for p in arith.problems("test", 3)]
    return arith, zoo_policy, zoo_prm, sampling_params(zoo_policy), questions


def solve(parts, name, seed=3, questions=None, **settings):
    task, policy, prm, params, all_questions = parts
    source = RecordingSource(task, policy, prm, params, seed)
    return run_method(make_method(name, **settings), questions or all_questions, source), source


def finished_candidates(question, log):
    """Every finished candidate a search made, from the source's record of its Extends
    (`grow` on each returned continuation of each prefix), with the text each ends in."""
    out = []
    for ask, groups in log:
        if isinstance(ask, Extend):
            for prefix, group in zip(ask.prefixes, groups):
                out += [c for c in (grow(question, Partial(prefix), s) for s in group) if c.finished]
    return out


def check_spend(answer, log):
    """What the engine counted is what the source returned."""
    samples = [s for ask, groups in log if isinstance(ask, Extend) for group in groups for s in group]
    assert answer.generated_tokens == sum(s.generated_tokens for s in samples) > 0
    assert answer.n_samples == len(samples)
    read = sum(r.tokens for ask, rs in log if isinstance(ask, ReadSteps) for r in rs)
    assert answer.prm_tokens == read + sum(r.prm_tokens for ask, r in log if isinstance(ask, ReadQuestion)) > 0


def check_best_finished(parts, answer, log):
    """The answer is the best finished candidate by PRM score (one with an answer first), and
    its confidence is that candidate's score at its last step."""
    task, _, prm, _, _ = parts
    question = answer.question
    finished = finished_candidates(question, log)
    assert answer.text in {c.text for c in finished}
    readings = prm.score([(question.problem.question, list(c.steps)) for c in finished])
    keys = [(c.answer is not None, statistic(r, lower=False)) for c, r in zip(finished, readings)]
    chosen = next(i for i, c in enumerate(finished) if c.text == answer.text)
    assert keys[chosen] == max(keys)
    assert answer.answer == task.extract(answer.text)
    assert answer.confidence == pytest.approx(unit(last_score(readings[chosen])), abs=1e-5)
    assert answer.choice.correct is None  # the caller grades the text


def test_fixed_beam_keeps_k_beams_of_m_and_answers_with_its_best_finished(parts):
    answers, source = solve(parts, "beam", n_init=6, k_max=2, m_max=3)
    for answer in answers:
        log = source.log[answer.question.id]
        waves = answer.waves
        assert waves[0]["extend"] == [6]
        for before, wave in zip(waves, waves[1:]):
            assert wave["candidates"] == sum(before["extend"])
            assert wave["kept"] == min(2, len(wave["open_stats"])) and wave["per_beam"] == 3
            assert wave["extend"] == [3] * wave["kept"]
            assert wave["open_stats"] == sorted(wave["open_stats"], reverse=True)
        check_spend(answer, log)
        check_best_finished(parts, answer, log)


def test_adaptive_beam_widths_follow_ias_of_k_and_m_and_narrow_on_confident_questions(parts):
    settings = dict(n_init=12, k_max=3, m_max=4)
    adaptive, source = solve(parts, "ias-beam", coverage=0.9, n_max=12, **settings)
    fixed, _ = solve(parts, "beam", **settings)
    for answer in adaptive:
        waves = answer.waves
        assert waves[0]["extend"] == [n_ias(waves[0]["p"], 0.9, 1, 12)]
        for wave in waves[1:]:
            k = ias_of_k(wave["open_stats"], 3, 4, 0.9, 12)
            assert wave["kept"] == k and wave["per_beam"] == ias_of_m(wave["open_stats"][:k], 4, 0.9, 12)
        check_spend(answer, source.log[answer.question.id])
    # On the question the PRM is surest of, the adaptive search starts narrower than n_init
    # and spends fewer continuations than the fixed search of the same caps.
    sure = max(range(len(adaptive)), key=lambda i: adaptive[i].waves[0]["p"])
    assert adaptive[sure].waves[0]["extend"][0] < 12
    assert adaptive[sure].n_samples < fixed[sure].n_samples


@pytest.mark.parametrize(
    "name, settings",
    [
        ("beam", dict(n_init=4, k_max=2, m_max=2, freq=2, max_rounds=3)),
        ("particle-filtering", dict(particles=4, max_rounds=4)),
    ],
)
def test_answers_depend_on_the_seed_not_the_batch(parts, name, settings):
    together, _ = solve(parts, name, seed=11, **settings)
    again, _ = solve(parts, name, seed=11, **settings)
    alone = [solve(parts, name, seed=11, questions=[q], **settings)[0][0] for q in parts[4][:2]]

    def summary(a):
        return (a.text, a.answer, a.generated_tokens, a.prm_tokens, a.n_samples, a.waves)

    assert [summary(a) for a in again] == [summary(a) for a in together]
    assert [summary(a) for a in alone] == [summary(a) for a in together[:2]]
    # The PRM reads a batch with padding: its scores agree to float noise, not bit for bit.
    assert [a.confidence for a in alone] == pytest.approx([a.confidence for a in together[:2]], abs=1e-6)
    other, _ = solve(parts, name, seed=12, **settings)
    assert [summary(a) for a in other] != [summary(a) for a in together]


def test_max_rounds_one_continues_every_candidate_to_the_end(parts):
    answers, source = solve(parts, "beam", n_init=3, k_max=3, m_max=1, max_rounds=1)
    for answer in answers:
        log = source.log[answer.question.id]
        [(extend, groups), (read, _)] = log  # one round: one Extend, one reading
        assert extend.to_end and isinstance(read, ReadSteps)
        assert len(finished_candidates(answer.question, log)) == 3 == len(read.solutions)


def test_freq_continues_open_candidates_before_one_reading(parts):
    answers, source = solve(parts, "beam", n_init=4, k_max=2, m_max=2, freq=2, max_rounds=3)
    for answer in answers:
        log = source.log[answer.question.id]
        reads = [i for i, (ask, _) in enumerate(log) if isinstance(ask, ReadSteps)]
        assert 1 <= len(reads) <= 3
        start = 0
        for end in reads:  # a round: 1 or 2 Extends (the second: once per open candidate), then its reading
            extends = log[start:end]
            assert 1 <= len(extends) <= 2 and all(isinstance(ask, Extend) for ask, _ in extends)
            first, groups = extends[0]
            opened = [
                c
                for prefix, group in zip(first.prefixes, groups)
                for c in (grow(answer.question, Partial(prefix), s) for s in group)
                if not c.finished
            ]
            if len(extends) == 2:
                second = extends[1][0]
                assert second.counts == (1,) * len(opened)
                assert second.prefixes == tuple(c.steps for c in opened)
            else:
                assert not opened
            done = sum(len(g) for g in groups) - len(opened)
            read = log[end][0]
            assert len(read.solutions) == done + (len(opened) if len(extends) == 2 else 0)
            start = end + 1


def test_particle_filtering_keeps_its_particles_and_answers_with_a_finished_one(parts):
    answers, source = solve(parts, "particle-filtering", particles=5, max_rounds=6)
    for answer in answers:
        log = source.log[answer.question.id]
        extends = [ask for ask, _ in log if isinstance(ask, Extend)]
        finished = finished_candidates(answer.question, log)
        assert len(finished) == 5  # every particle ends once, none is lost or added
        done = 0
        for ask, groups in (entry for entry in log if isinstance(entry[0], Extend)):
            assert ask.counts == (1,) * (5 - done)
            done += sum(grow(answer.question, Partial(p), g[0]).finished for p, g in zip(ask.prefixes, groups))
        assert extends[-1].to_end or done == 5
        check_resampling(make_method("particle-filtering", particles=5, max_rounds=6), answer.question, log)
        check_spend(answer, log)
        check_best_finished(parts, answer, log)


def check_resampling(method, question, log):
    """Each round's particles are the unfinished ones of the round before, drawn by the
    filter's seeded resampling of their PRM scores (the reading the source returned)."""
    steps = [entry for entry in log if isinstance(entry[0], (Extend, ReadSteps))]
    for round_, ((ask, groups), (_, readings), (after, _)) in enumerate(zip(steps[::2], steps[1::2], steps[2::2])):
        grown = [grow(question, Partial(p), s) for p, g in zip(ask.prefixes, groups) for s in g]
        scores = [statistic(r, lower=False) for c, r in zip(grown, readings) if not c.finished]
        parents = method.resample(scores, derive_seed("particle-filtering", question.id, round_))
        opened = [c for c in grown if not c.finished]
        assert after.prefixes == tuple(opened[i].steps for i in parents) and after.note["parents"] == parents


def test_particle_resampling_is_seeded_and_follows_the_weights():
    greedy = make_method("particle-filtering", resample_temperature=1e-3)
    assert greedy.resample([0.2, 0.9, 0.1], seed=5) == [1, 1, 1]
    flat = make_method("particle-filtering", resample_temperature=1.0)
    draws = flat.resample([0.5] * 400, seed=7)
    assert draws == flat.resample([0.5] * 400, seed=7) and len(set(draws)) > 100  # equal weights spread out
    assert draws != flat.resample([0.5] * 400, seed=8)


def test_bad_settings_are_user_errors(parts):
    task, policy, _, params, questions = parts
    with pytest.raises(UserError, match="--k-max must be >= 1"):
        make_method("beam", k_max=0)
    with pytest.raises(UserError, match="coverage"):
        make_method("ias-beam", coverage=1.0)
    with pytest.raises(UserError, match="--coverage is not a setting of strategy 'beam'"):
        make_method("beam", coverage=0.9)  # the fixed search has no budget to cover
    with pytest.raises(UserError, match="--particles must be >= 1"):
        make_method("particle-filtering", particles=0)
    with pytest.raises(UserError, match="--resample-temperature"):
        make_method("particle-filtering", resample_temperature=0.0)
    for name in ("beam", "particle-filtering"):
        with pytest.raises(UserError, match="--prm"):
            run_method(make_method(name, max_rounds=1), questions[:1], LiveSource(task, policy, None, params, 0))


def test_one_statistic_lower_quantile_when_adaptive_else_the_score():
    calibrated = StepScores(scores=[0.3, 0.6], quantiles=[[0.1, 0.3, 0.5], [0.2, 0.6, 0.9]])
    assert statistic(calibrated, lower=True) == 0.2
    assert statistic(calibrated, lower=False) == 0.6
    assert statistic(StepScores(scores=[0.7]), lower=True) == 0.7  # uncalibrated: the score
    for unreadable in (StepScores(skipped="too long"), StepScores(scores=[float("nan")])):
        assert statistic(unreadable, lower=False) == 0.0 and last_score(unreadable) is None


def test_a_step_stating_the_answer_finishes_its_candidate_even_if_the_model_writes_on():
    """Models such as SmolLM2 write more steps after `\\boxed{}`; a candidate ends at its answer."""
    task = get_task("arith")
    question = Question(task.problems("test", 1)[0], task.extract)
    parent = Partial(("1+1=2",))
    step = grow(question, parent, Sample("2+3=5", 10, 5, "stop", stop=STEP_DELIMITER))
    assert not step.finished and step.steps == ("1+1=2", "2+3=5")
    answer = question.problem.answer
    right = grow(question, parent, Sample(f"\\boxed{{{answer}}}", 10, 5, "stop", stop=STEP_DELIMITER))
    assert right.finished and right.answer == answer
    assert right.text == f"1+1=2{STEP_DELIMITER}\\boxed{{{answer}}}" and split_steps(right.text) == list(right.steps)
    ended = grow(question, parent, Sample("2+3=5", 10, 5, "eos"))
    assert ended.finished and ended.answer is None


def test_a_partial_solution_that_fills_the_context_finishes_as_it_stands(arith, zoo_policy, zoo_prm):
    """A partial solution whose prompt already fills the policy's context cannot grow: the
    source gives it one empty continuation ended by length (a search then finishes it as it
    stands) and still draws the others of the same call; beam search runs on."""
    [problem] = arith.problems("test", 1)
    question = Question(problem, arith.extract)
    source = LiveSource(arith, zoo_policy, zoo_prm, sampling_params(zoo_policy), 0, grade=False)
    too_long = ("1+1=2 " * 200,)
    [[full, fine]] = source.extend([(question, Extend(prefixes=(too_long, ()), counts=(3, 2), key=("t",)))])
    assert [(s.text, s.generated_tokens, s.finish_reason) for s in full] == [("", 0, "length")]
    assert len(fine) == 2 and all(s.generated_tokens > 0 for s in fine)
    assert grow(question, Partial(too_long), full[0]).finished
