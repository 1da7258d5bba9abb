"""Every registered method run by the engine on hand-built pools (each rule's arithmetic),
on a real pool (the first N samples of an N_max run are an N-sample run), and `ias eval`'s
orderings, oracles and tuning."""

from __future__ import annotations

import dataclasses

import pytest

from ias.errors import UserError
from ias.evaluation import Budget, check_strategies, fixed_sizes, replay
from ias.loaders import sampling_params
from ias.methods import make_method
from ias.methods.base import Question
from ias.methods.engine import run_method
from ias.methods.ias_adaptive import ConfidenceMap, count_band
from ias.methods.sources import PoolSource
from ias.scaling import adaptive
from ias.scaling.bon import BestOfN
from ias.scaling.budget import n_ias
from ias.scaling.pool import PoolProblem
from ias.tasks.base import get_task
from ias.types import Problem


def sample(answer, correct, score=0.5, tokens=10, quantiles=None, logprobs=None, finish="eos"):
    return {
        "text": f"answer {answer}",
        "answer": answer,
        "correct": correct,
        "score": score,
        "generated_tokens": tokens,
        "prm_tokens": 20,
        "quantiles": quantiles,
        "logprobs": logprobs,
        "finish_reason": finish,
    }


def pool(samples, lower=0.5, qid="x"):
    """A pool record (keys an older pool may lack get their defaults)."""
    return PoolProblem.from_json(
        {
            "id": qid,
            "question": "q",
            "samples": samples,
            "question_reading": {"score": lower, "quantiles": [lower, lower, lower], "prm_tokens": 7},
        }
    )


def run(method, *records):
    """The method's answers on pool records, as the engine runs it live."""
    questions = [Question(Problem(r.id, r.question, ""), lambda text: None) for r in records]
    return run_method(method, questions, PoolSource(list(records)))


def test_ias_bon_takes_the_first_n_ias_samples_and_pays_for_the_question():
    samples = [sample(str(i), i == 5, score=i / 100) for i in range(64)]
    for lower in (0.5, 0.3, 0.1):
        [out] = run(make_method("ias-bon"), pool(samples, lower))
        n = n_ias(lower, 0.99, 1, 64)
        assert out.n_samples == n and out.generated_tokens == 10 * n and out.prm_tokens == 20 * n + 7
        assert out.answer == str(n - 1)  # the best-scored of the first n
        assert out.waves == [{"draw": n, "p": lower}]


def test_oracle_budgets_from_the_true_rate_and_fleet_spends_the_same_total():
    easy = pool([sample("1", True)] * 32 + [sample("2", False)] * 32, lower=0.1, qid="e")
    hard = pool([sample("1", j == 0) for j in range(64)], lower=0.9, qid="h")
    for record, p in ((easy, 0.5), (hard, 1 / 64)):
        oracle = adaptive.oracle_ias(record, adaptive.prefix_view(record), 0.99, 64)
        assert oracle.samples == n_ias(p)
    shared = run(make_method("fleet"), easy, hard)
    assert sum(a.n_samples for a in shared) == n_ias(0.1) + n_ias(0.9)  # what ias-bon spends, shared out
    from ias.scaling.budget import fleet_allocation

    assert [a.n_samples for a in shared] == fleet_allocation([0.1, 0.9], n_ias(0.1) + n_ias(0.9)) == [43, 3]


def test_sequential_ias_stops_when_finished_samples_look_right():
    confident = pool([sample("1", True, quantiles=[0.95, 0.97, 0.99])] * 64, lower=0.5)
    doubtful = pool([sample("1", False, quantiles=[0.01, 0.02, 0.03])] * 64, lower=0.5)
    wave = n_ias(0.5)
    method = make_method("ias-seq")
    assert run(method, confident)[0].n_samples == wave
    assert run(method, doubtful)[0].n_samples == 64  # waves until the budget
    # Estimates of 0.2 each: 7 (one-shot at p_lo 0.5), then the missing share at p_lo: +5, +3, +2, +2, +1, +1;
    # after 21 samples 1 - 0.8^21 = 0.9908 >= 0.99 (after 20: 0.9885).
    middling = pool([sample("1", False, quantiles=[0.2, 0.3, 0.4])] * 64, lower=0.5)
    [out] = run(method, middling)
    assert out.n_samples == 21 and [w["draw"] for w in out.waves] == [7, 5, 3, 2, 2, 1, 1]


def test_consistency_peers_stop_on_agreement_and_read_no_prm():
    agree = pool([sample("7", True)] * 64)
    mixed = pool([sample(str(j % 3), j % 3 == 0) for j in range(64)])
    assert run(make_method("esc"), agree)[0].n_samples == 5
    assert run(make_method("esc"), mixed)[0].n_samples == 64
    assert run(make_method("adaptive-consistency"), agree)[0].n_samples < 8
    [out] = run(make_method("adaptive-consistency"), mixed)
    assert out.n_samples == 64 and out.prm_tokens == 0
    [vote] = run(make_method("bon", n=64, selection="majority"), mixed)
    assert vote.answer == "0" and vote.prm_tokens == 0 and vote.confidence == pytest.approx(22 / 64)


def test_deepconf_counts_a_stopped_trace_up_to_its_exit_and_leaves_it_out_of_the_vote():
    sure = [-0.01] * 20
    unsure = [-0.01] * 4 + [-3.0] * 16  # the first full window of 8 (tokens 0..7) is already below
    samples = [sample("1", True, tokens=20, logprobs=sure)] * 16 + [sample("2", False, tokens=20, logprobs=unsure)] * 20
    [out] = run(make_method("deepconf", n_max=36), pool(samples))
    assert out.answer == "1" and out.choice.correct
    assert out.generated_tokens == 16 * 20 + 20 * 8  # each unsure trace exits after its 8th token
    assert out.n_samples == 36 and sum(s.finish_reason == "exit" for s in out.samples) == 20


def test_replay_names_the_fixed_curve_and_rejects_unknown_strategies():
    records = [pool([sample("1", True, score=0.9)] * 8, lower=0.9)]
    results = replay(records, ["bon", "ias-bon", "ias-bon-uncalibrated", "sc"], Budget(n_max=8))
    assert {n for n in results if ":" not in n} == {
        "bon@1",
        "bon@2",
        "bon@4",
        "bon@8",
        "sc@8",
        "ias-bon",
        "ias-bon-uncalibrated",
    }
    assert {f"frontier:{how}@8" for how in ("best", "majority", "weighted")} <= set(results)
    assert all(len(runs) == adaptive.ORDERINGS for runs in results["bon@2"])  # every method, every ordering
    assert fixed_sizes(64) == [1, 2, 4, 8, 16, 32, 64] and fixed_sizes(48)[-1] == 48
    with pytest.raises(UserError, match="unknown strategy 'best-of'"):
        check_strategies(["bon", "best-of"])


def test_first_n_samples_of_a_larger_pool_are_an_n_sample_run(zoo_policy):
    task, policy = get_task("arith"), zoo_policy
    problems = task.problems("test", 3)
    params = sampling_params(policy)
    small = BestOfN(n=4, selection="majority").run(problems, task, policy, None, params, seed=5)
    large = BestOfN(n=8, selection="majority").run(problems, task, policy, None, params, seed=5)
    for a, b in zip(small, large):
        assert [s["text"] for s in a["samples"]] == [s["text"] for s in b["samples"][:4]]


def test_tuning_picks_the_cheapest_setting_within_tolerance_of_fixed_best_of_n():
    from ias.evaluation import tune_budget

    reading = {"score": 0.9, "quantiles": [0.1, 0.9, 0.95], "prm_tokens": 7}
    easy = {"id": "e", "question": "q", "samples": [sample("1", True, score=0.9)] * 64, "question_reading": reading}
    tuning = tune_budget([PoolProblem.from_json(easy)] * 3, Budget(n_max=64))
    assert (tuning["estimate"], tuning["coverage"]) == ("median", 0.5)  # one sample each: n_ias(0.9, 0.5) == 1
    assert tuning["bon@64_accuracy"] == 1.0 and len(tuning["grid"]) == 12
    # Only the 41st sample is right: only the lower quantile at C = 0.99 draws it (n_ias(0.1, 0.99) == 44).
    hard = {**easy, "samples": [sample("2", False, score=0.5)] * 40 + [sample("1", True, score=0.95)] * 24}
    tuning = tune_budget([PoolProblem.from_json(hard)], Budget(n_max=64))
    assert (tuning["estimate"], tuning["coverage"]) == ("lower", 0.99)
    assert [g["accuracy"] for g in tuning["grid"]].count(1.0) == 1


def test_a_question_the_prm_cannot_read_gets_the_whole_budget(tmp_path):
    """A PRM context of 20 tokens leaves the longer questions (and every sample) unread: no
    estimate, so every IAS method, calibrated or not, budgets them N_max; never a crash."""
    import json

    import ias

    strategies = ["bon", "ias-bon", "ias-bon-median", "ias-bon-uncalibrated", "ias-seq", "fleet", "ias-beam"]
    summary = ias.evaluate(
        limit=6,
        n_max=4,
        k_max=2,
        m_max=2,
        beam_rounds=2,
        out=tmp_path,
        progress=False,
        strategies=strategies,
        prm_options={"max_length": 20},
    )
    pool_records = [json.loads(line) for line in (tmp_path / "pool" / "records.jsonl").read_text().splitlines()]
    unread = {r["id"] for r in pool_records if r["question_reading"]["skipped"]}
    assert 0 < len(unread) < 6  # "Compute 2+3." fits in 20 tokens, "Compute 12*3+45." does not
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    for r in records:
        if r["id"] in unread:
            assert r["p_lower"] == 0 and r["p_uncalibrated"] == 0
            for name in ("ias-bon", "ias-bon-median", "ias-bon-uncalibrated", "ias-seq"):
                assert r["methods"][name]["samples"] == 4, (name, r["methods"][name])
    assert summary["methods"]["bon@4"]["samples"] == 24


def test_eval_resumes_across_settings_that_change_no_records(tmp_path):
    """Adding a tuning split, growing its limit and another coverage resume the pool, the
    tuning pool and the fixed beam search; a PRM that scores otherwise is refused."""
    import ias
    from ias.records import read_records

    kw = dict(limit=2, n_max=2, k_max=1, m_max=1, beam_rounds=1, out=tmp_path, progress=False)
    ias.evaluate(strategies=["bon", "beam"], **kw)
    pool, beam = ((tmp_path / x / "records.jsonl").read_bytes() for x in ("pool", "beam"))
    tuned = ["bon", "beam", "ias-bon-tuned"]
    ias.evaluate(strategies=tuned, coverage=0.9, tune_split="calib", tune_limit=1, **kw)
    summary = ias.evaluate(strategies=tuned, coverage=0.9, tune_split="calib", tune_limit=2, **kw)
    assert (tmp_path / "pool" / "records.jsonl").read_bytes() == pool
    assert (tmp_path / "beam" / "records.jsonl").read_bytes() == beam
    assert len(read_records(tmp_path / "tune" / "pool" / "records.jsonl")) == 2
    assert summary["tuning"]["split"] == "calib" and summary["tuning"]["n_problems"] == 2
    with pytest.raises(UserError, match=r"other settings \(prm_options\)"):
        ias.evaluate(strategies=["bon"], prm_options={"max_length": 20}, **kw)


def test_replayed_wall_time_is_the_evaluated_problems_share_of_the_pool(tmp_path):
    import ias
    from ias.records import read_records

    kw = dict(
        n_max=2,
        k_max=1,
        m_max=1,
        beam_rounds=1,
        strategies=["bon", "beam"],
        out=tmp_path,
        progress=False,
        batch_problems=2,
    )
    ias.evaluate(limit=4, **kw)
    pool, beam = (read_records(tmp_path / x / "timing.jsonl") for x in ("pool", "beam"))
    two = ias.evaluate(limit=2, **kw)  # all done: only the first two problems' share counts
    assert two["pool"]["wall_s"] == pytest.approx(sum(t["wall_s"] for t in pool[:2]), abs=0.01)
    assert two["pool"]["wall_s"] > 0
    assert two["methods"]["bon@2"]["wall_s"] == pytest.approx(two["pool"]["wall_s"], abs=0.01)
    assert two["methods"]["beam"]["wall_s"] == pytest.approx(sum(t["wall_s"] for t in beam[:2]), abs=0.01)
    assert "notes" not in two
    (tmp_path / "pool" / "timing.jsonl").unlink()  # a pool written before ias timed each problem
    old = ias.evaluate(limit=2, **kw)
    assert old["pool"]["wall_s"] == 0 and old["methods"]["bon@2"]["wall_s"] == 0
    assert old["notes"] == [
        f"2 of 2 problems in {tmp_path / 'pool'} were solved before ias timed each problem: "
        "their wall time counts as 0 s"
    ]


def test_tuning_on_the_evaluated_questions_under_another_split_name_is_refused(tmp_path):
    """A jsonl file serves the same questions under any split name (other ids): the overlap
    check compares questions, not ids."""
    import json

    import ias

    file = tmp_path / "q.jsonl"
    file.write_text("".join(json.dumps({"question": f"Compute {k}+{k}.", "answer": 2 * k}) + "\n" for k in range(4)))
    with pytest.raises(UserError, match="tuning problems include 2 evaluated questions .*tune on another split"):
        ias.evaluate(
            task=f"jsonl:{file}",
            split="test",
            tune_split="calib",
            limit=2,
            n_max=2,
            out=tmp_path / "e",
            strategies=["bon", "ias-bon-tuned"],
            progress=False,
        )


def test_orderings_are_seeded_permutations_and_every_method_is_averaged_over_them():
    record = pool([sample(str(j), j == 0, score=j / 10) for j in range(8)])
    first, again, other = (adaptive.reorder(record, 3, k) for k in (0, 0, 1))
    assert first is record  # ordering 0: the pool as drawn, the run `ias solve` makes
    assert [s.answer for s in first.samples] == [s.answer for s in again.samples]
    assert [s.answer for s in first.samples] != [s.answer for s in other.samples]
    assert sorted(s.answer for s in first.samples) == [str(j) for j in range(8)]
    assert record.samples[0].answer == "0"  # the pool itself is left alone
    # One right sample in 8: the first one of an ordering is right in about 1/8 of them.
    runs = replay([record], ["bon"], Budget(n_max=8), orderings=64)["bon@1"][0]
    share = adaptive.expected(runs).correct
    assert share == sum(o.correct for o in runs) / 64 and 0 < share < 0.3
    assert (
        adaptive.expected(runs).samples == 1
        and adaptive.expected(replay([record], ["bon"], Budget(n_max=8))["bon@8"][0]).correct == 0.0
    )  # the best-scored of all 8 (score 0.7) is wrong


def test_best_by_prefix_is_select_on_every_prefix():
    from ias.scaling.select import best_by_prefix, select

    answers = ["1", None, "2", "3", None, "2", "4"]
    scores = [0.2, 0.9, 0.5, 0.5, 0.95, 0.7, float("-inf")]
    chosen = best_by_prefix(answers, scores)
    assert chosen == [select(answers[: k + 1], scores[: k + 1], "best") for k in range(len(answers))]
    assert chosen == [0, 0, 2, 2, 2, 5, 5]  # answered before unanswered, first on ties


def test_ias_adaptive_stops_on_a_confident_answer_and_reports_its_confidence():
    sure = pool([sample("1", True, score=0.97)] * 64, lower=0.5)
    unsure = pool([sample("2", False, score=0.3)] * 63 + [sample("1", True, score=0.97)], lower=0.5)
    method = make_method("ias-adaptive", target=0.9, price=0.0, wave=2, growth=1.0)
    [out] = run(method, sure)
    assert out.n_samples == 1 and out.choice.correct and out.confidence == pytest.approx(0.97)  # n_ias(0.5, 0.5) == 1
    [out] = run(method, unsure)
    assert out.n_samples == 64 and out.choice.correct and out.generated_tokens == 640
    assert out.prm_tokens == 64 * 20 + 7 and [w["draw"] for w in out.waves] == [1] + [2] * 31 + [1]
    # Growing waves: each holds what the question has (at least `wave`): 7 waves, not 33.
    [grown] = run(make_method("ias-adaptive", target=0.9, price=0.0, wave=2, growth=2.0), unsure)
    assert [w["draw"] for w in grown.waves] == [1, 2, 3, 6, 12, 24, 16] and grown.n_samples == 64
    # A price: 10 tokens cost 0.3; the success estimate (4 * 0.5 + 0.3 n) / (4 + n) (the question's estimate
    # worth 4 samples) times 0.7 (one minus the confidence) falls below that after 3 samples (0.29).
    priced = make_method("ias-adaptive", target=0.9, price=0.03, wave=1, prior=4, growth=1.0)
    [out] = run(priced, unsure)
    assert out.n_samples == 3 and not out.choice.correct and out.confidence == pytest.approx(0.3)
    # A map fitted on choices where a 0.3 is right half the time says so.
    fitted = adaptive.fit_confidence(
        [adaptive.prefix_view(pool([sample("1", k % 2 == 0, score=0.3)] * 4)) for k in range(4)]
    )
    assert run(dataclasses.replace(priced, confidence_map=fitted), unsure)[0].confidence == 0.5


def test_the_tuning_replay_of_ias_adaptive_is_the_method():
    """`adaptive_size` and `replay_sizes` (the tuning grid's replays, one record and all at
    once) draw what the registered method draws, for every setting of a small grid, on varied
    pools (and, for the replays, pools smaller than n_max), through a map fitted per band of samples drawn; and the
    method reports the band's confidence."""
    import itertools
    import random

    rng = random.Random(3)
    records = [
        pool(
            [
                sample(str(rng.randint(0, 3)), rng.random() < 0.4, score=rng.random(), tokens=rng.randint(5, 60))
                for _ in range(16)
            ],
            lower=rng.random(),
            qid=str(k),
        )
        for k in range(12)
    ]
    mapping = adaptive.fit_confidence([adaptive.prefix_view(r) for r in records])
    short = [dataclasses.replace(r, samples=r.samples[:11]) for r in records[:4]]  # the replays cap at a smaller pool
    views = [adaptive.prefix_view(r) for r in records + short]
    assert sorted(mapping.by_band) == [0, 1, 2, 3, 4]  # 1, 2-3, 4-7, 8-15 and 16 samples drawn
    readings = [adaptive.read_view(v, mapping) for v in views]
    table = adaptive.replay_table(views, readings, [adaptive.median(r) for r in records + short], 16)
    for target, price, wave, prior, growth in itertools.product(
        (0.8, 0.95), (0.0, 0.001, 0.01), (1, 3), (1.0, 4.0), (1.0, 1.5, 2.0)
    ):
        method = make_method(
            "ias-adaptive",
            target=target,
            price=price,
            wave=wave,
            prior=prior,
            growth=growth,
            n_max=16,
            confidence_map=mapping,
        )
        answers = run(method, *records) + [None] * len(short)
        sizes = adaptive.replay_sizes(table, method.settings).tolist()
        for record, view, reading, answer, size in zip(records + short, views, readings, answers, sizes):
            n = adaptive.adaptive_size(view, reading, adaptive.median(record), method.settings, 16)
            assert n == size
            if answer is None:
                continue
            assert answer.n_samples == n
            assert answer.confidence == pytest.approx(reading.confidence[n - 1])
            band = mapping.by_band[count_band(n)]
            assert answer.confidence == pytest.approx(band.predict([view.chosen_score[n - 1]])[0])


def test_the_confidence_map_reads_a_choice_by_how_many_samples_it_was_chosen_among():
    """A top score among many samples is worth less than the same score alone: the map per
    band says so where one map over all choices cannot; it survives its dict form."""
    right_alone = [pool([sample("1", True, score=0.8)], qid=f"a{k}") for k in range(8)]
    wrong_among_many = [
        pool([sample("3", False, score=0.1)] + [sample("2", False, score=0.8)] * 7, qid=f"m{k}") for k in range(8)
    ]
    mapping = adaptive.fit_confidence([adaptive.prefix_view(r) for r in right_alone + wrong_among_many])
    alone, among = mapping.chosen([0.8, 0.8], [1, 8]).tolist()
    assert alone == 1.0 and among == 0.0 and 0.0 < mapping([0.8])[0] < 1.0
    again = ConfidenceMap.from_dict(mapping.to_dict())
    assert again.chosen([0.8, 0.8, 0.8], [1, 5, 40]).tolist() == mapping.chosen([0.8, 0.8, 0.8], [1, 5, 40]).tolist()
    assert ConfidenceMap().chosen([0.7, 2.0], [1, 9]).tolist() == [0.7, 1.0]  # unfitted: the (clipped) score
    assert [count_band(n) for n in (1, 2, 3, 4, 7, 8, 31, 32, 64, 1000)] == [0, 1, 1, 2, 2, 3, 4, 5, 5, 5]


def test_tuned_settings_keep_their_budget_on_the_tuning_pool_and_oracle_alloc_spends_b():
    from ias.evaluation import tune_adaptive

    easy = pool([sample("1", True, score=0.95, tokens=50)] * 16, lower=0.9)
    hard = pool(
        [sample("2", False, score=0.1, tokens=50)] * 12 + [sample("1", True, score=0.9, tokens=50)] * 4, lower=0.3
    )
    hopeless = pool([sample("2", False, score=0.05, tokens=50)] * 16, lower=0.1)
    records = [dataclasses.replace(r, id=str(k)) for k, r in enumerate([easy, hard, hopeless] * 2)]
    tuned = tune_adaptive(records, Budget(n_max=16), tolerance=0.01)
    grid = {(g["target"], g["price"], g["wave"], g["prior"], g["growth"]): g for g in tuned["grid"]}
    cheapest = min(tuned["grid"], key=lambda g: g["tokens"])
    for b, settings in tuned["by_budget"].items():  # within B samples per question, or none is: the cheapest
        chosen = grid[tuple(settings.values())]
        assert chosen["samples"] <= int(b) or chosen == cheapest
    assert grid[tuple(tuned["by_budget"]["8"].values())]["samples"] <= 8
    results = replay(records, ["ias-adaptive", "oracle-alloc"], Budget(n_max=16), {"adaptive": tuned})
    for b in (2, 4, 8):
        spent = [adaptive.expected(runs).samples for runs in results[f"oracle-alloc@{b}"]]
        assert sum(spent) <= 6 * b  # no sample where it buys nothing
    assert sum(adaptive.expected(runs).samples for runs in results["oracle-alloc@2"]) == 12
    # With 4 samples each on average, the oracle solves the easy and the hard questions; the
    # hopeless ones get a single sample each.
    four = [adaptive.expected(runs) for runs in results["oracle-alloc@4"]]
    assert [o.samples for o in four[::3] + four[2::3]] == [1, 1, 1, 1] and four[0].correct == 1.0
    assert four[1].samples >= 4 and four[1].correct > 0.9
    main = [adaptive.expected(runs) for runs in results["ias-adaptive"]]
    assert main[0].samples == 1 and main[2].samples < main[1].samples  # few for easy and hopeless, more for hard


def test_ias_adaptive_at_b_keeps_to_fixed_n_tokens_with_a_margin_for_other_problems():
    """`ias-adaptive@B` is the most accurate setting whose tokens' upper bound over resamples of
    the tuning questions (`tokens_high`) is within fixed N = B's, not merely their mean: a
    setting that only just fits the tuning pool overspends on other problems half the time."""
    import random

    from ias.evaluation import tune_adaptive

    rng = random.Random(5)
    records = [
        pool(
            [
                sample(str(rng.randint(0, 3)), rng.random() < p, score=rng.random(), tokens=rng.randint(5, 90))
                for _ in range(16)
            ],
            lower=p,
            qid=str(k),
        )
        for k, p in enumerate(rng.choice((0.0, 0.1, 0.4, 0.9)) for _ in range(24))
    ]
    tuned = tune_adaptive(records, Budget(n_max=16), tolerance=0.01)
    grid = tuned["grid"]
    assert all(g["tokens_high"] >= g["tokens"] for g in grid)
    assert any(g["tokens_high"] > 1.02 * g["tokens"] for g in grid)  # a margin where spends differ, not the mean
    one = sum(sum(s.generated_tokens for s in r.samples) / len(r.samples) for r in records)
    for b, settings in tuned["by_budget"].items():
        chosen = next(g for g in grid if all(g[k] == v for k, v in settings.items()))
        fits = [g for g in grid if g["tokens_high"] <= int(b) * one]
        if not fits:
            assert chosen["tokens"] == min(g["tokens"] for g in grid)
            continue
        assert chosen in fits and chosen["accuracy"] == max(g["accuracy"] for g in fits)
    by_mean = [g for g in grid if g["tokens"] <= 8 * one]  # the mean alone admits settings the bound refuses
    assert any(g["tokens_high"] > 8 * one for g in by_mean)
    # @B compare at equal tokens and may take waves growing by half; the main setting keeps the
    # method's own growth (its live wall time is what was measured).
    own = make_method("ias-adaptive").growth
    assert {g["growth"] for g in grid} == {own, *adaptive.BUDGET_GROWTHS} and tuned["settings"]["growth"] == own


def test_eval_reports_the_frontier_ias_adaptive_its_confidence_and_the_oracle(tmp_path, zoo_prm):
    """A real (small) `ias eval` with a tuning split: the frontier of every selection rule,
    ias-adaptive tuned on the tuning pool with its @B family, the oracle, the ECE of the
    confidences, and report.md's verdict."""
    import json

    import ias
    from ias.evaluation import _read_raw, fixed_sizes
    from ias.records import read_records

    strategies = [
        "bon",
        "sc",
        "weighted",
        "ias-seq",
        "adaptive-consistency",
        "ias-adaptive",
        "ias-adaptive-uncalibrated",
        "oracle-alloc",
        "ias-beam",
    ]
    summary = ias.evaluate(
        limit=4, n_max=4, out=tmp_path, progress=False, strategies=strategies, tune_split="calib", tune_limit=4
    )
    frontier = summary["frontier"]
    assert set(frontier) == {"best", "majority", "weighted"}
    assert [p["n"] for p in frontier["best"]] == fixed_sizes(4)
    assert [p["accuracy"] for p in frontier["best"]] == [
        summary["methods"][f"bon@{n}"]["accuracy"] for n in fixed_sizes(4)
    ]
    assert frontier["majority"][-1]["accuracy"] == summary["methods"]["sc@4"]["accuracy"]
    assert {
        "ias-adaptive",
        "ias-adaptive@2",
        "ias-adaptive@4",
        "oracle-alloc@2",
        "oracle-alloc@4",
        "ias-adaptive-uncalibrated",
    } <= set(summary["methods"])
    assert summary["methods"]["oracle-alloc@2"]["samples"] <= 2 * 4
    sweeps = summary["sweeps"]  # each adaptive method's main knob, a line on pareto.png
    assert {name: sweep["knob"] for name, sweep in sweeps.items()} == {
        "ias-adaptive": "price",
        "ias-seq": "coverage",
        "adaptive-consistency": "threshold",
    }
    assert [p["value"] for p in sweeps["ias-seq"]["points"]] == [0.5, 0.7, 0.8, 0.9, 0.95, 0.99]
    assert not any(":" in name for name in summary["methods"])
    tuning = json.loads((tmp_path / "tune" / "tuning.json").read_text())["adaptive"]
    assert tuning["n_problems"] == 4 and set(tuning["by_budget"]) == {"2", "4", "8", "16", "32"}
    ece = summary["confidence_ece"]
    assert 0 <= ece["calibrated"] <= 1 and 0 <= ece["uncalibrated"] <= 1
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    for r in records:
        assert 0 <= r["methods"]["ias-adaptive"]["confidence"] <= 1
        assert 0 <= r["methods"]["ias-beam"]["confidence"] <= 1  # every method's answer carries one
        assert 0 <= r["methods"]["bon@4"]["correct"] <= 1  # the chance over the orderings
    assert "## Against the fixed-N frontier" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "pareto.png").stat().st_size > 0
    # Without a calibrator the raw PRM re-read of every pool sample is the pool's own score.
    pool = _read_raw(zoo_prm, [PoolProblem.from_json(r) for r in read_records(tmp_path / "pool" / "records.jsonl")])
    assert all(s.has_raw and s.raw_score == pytest.approx(s.score, abs=1e-5) for r in pool for s in r.samples)
