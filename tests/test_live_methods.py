"""Every whole-sample method live: `ias solve --strategy M`, `ias.Solver`, `ias ask`, on the zoo.

What a record says was generated is checked against a policy that counts the tokens of the
samples it returns; a method that stops early must generate fewer tokens than fixed
Best-of-N at its most samples; resumes and reruns write the same bytes.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

import ias
from ias.calibration.posthoc import IsotonicRegression
from ias.cli import main
from ias.methods.strategy import content_sha
from ias.records import read_records
from ias.tasks.base import get_task

N_MAX = 8
LIMIT = 4
#: Every method that draws whole samples, at small sizes (the keyword spelling of its flags).
WHOLE_SAMPLE = {
    "bon": {"n": N_MAX},
    "ias-bon": {"n_max": N_MAX},
    "ias-seq": {"n_max": N_MAX},
    "fleet": {"n_max": N_MAX},
    "ias-adaptive": {"n_max": N_MAX},
    "adaptive-consistency": {"n_max": N_MAX},
    "esc": {"n_max": N_MAX, "window": 3},
    "deepconf": {"n_max": N_MAX, "warmup": 4},
}


def flags(settings: dict) -> list[str]:
    return [x for k, v in settings.items() for x in ("--" + k.replace("_", "-"), str(v))]


def solve_cli(out, strategy: str, *more: str, limit: int = LIMIT) -> int:
    return main(
        ["solve", "--strategy", strategy, *more, "--limit", str(limit), "--out", str(out), "--batch-problems", "2"]
    )


def counting(policy):
    """The same policy, its class a subclass that sums the generated tokens of every sample it returns."""

    class Counting(type(policy)):
        def sample(self, *args, **kwargs):
            groups = super().sample(*args, **kwargs)
            self.generated += sum(s.generated_tokens for group in groups for s in group)
            self.drawn += sum(len(group) for group in groups)
            return groups

    counted = copy.copy(policy)
    counted.__class__ = Counting
    counted.generated = counted.drawn = 0
    return counted


@pytest.mark.parametrize("strategy", list(WHOLE_SAMPLE))
def test_solve_records_what_was_generated(strategy, tmp_path, zoo_policy, zoo_prm):
    settings = WHOLE_SAMPLE[strategy]
    assert solve_cli(tmp_path / "run", strategy, *flags(settings)) == 0
    records = read_records(tmp_path / "run" / "records.jsonl")
    assert len(records) == LIMIT
    for r in records:
        assert r["usage"]["generated_tokens"] == sum(s["generated_tokens"] for s in r["samples"])
        assert r["usage"]["samples"] == len(r["samples"]) <= N_MAX
        assert r["usage"]["prm_tokens"] >= sum(s["prm_tokens"] for s in r["samples"])
        assert r["answer"] is None or r["answer"] in [s["answer"] for s in r["samples"]]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["strategy"] == strategy and all(config[k] == v for k, v in settings.items())

    # the same problems, seed and settings through the Python API, the policy counting what it returns
    counted = counting(zoo_policy)
    problems = get_task("arith").problems("test", LIMIT)
    answers = []
    for pair in (problems[:2], problems[2:]):  # the CLI's batches (a fleet shares out within one)
        answers += ias.Solver(counted, zoo_prm, strategy=strategy, **settings).solve_many(pair)
    assert counted.generated == sum(r["usage"]["generated_tokens"] for r in records)
    assert counted.drawn == sum(r["usage"]["samples"] for r in records)
    for r, a in zip(records, answers):
        assert (r["id"], r["answer"]) == (a.question.id, a.answer)
        assert [s["text"] for s in r["samples"]] == [s.text for s in a.samples]


@pytest.mark.parametrize("strategy", ["adaptive-consistency", "ias-adaptive", "esc"])
def test_a_method_that_stops_early_generates_less_than_bon_at_n_max(strategy, zoo_policy, zoo_prm):
    problems = get_task("arith").problems("test", 6)
    bon = ias.Solver(zoo_policy, zoo_prm, strategy="bon", n=16).solve_many(problems)
    adaptive = ias.Solver(zoo_policy, zoo_prm, strategy=strategy, n_max=16).solve_many(problems)
    stopped = [a for a in adaptive if a.n_samples < 16]
    assert stopped, "no question stopped early"
    assert sum(a.generated_tokens for a in adaptive) < sum(b.generated_tokens for b in bon)
    for a, b in zip(adaptive, bon):  # sample j is sample j whoever draws it
        assert [s.text for s in a.samples] == [s.text for s in b.samples[: len(a.samples)]]


def test_resume_and_rerun_write_the_same_bytes(tmp_path):
    args = ["--n-max", str(N_MAX)]
    assert solve_cli(tmp_path / "a", "ias-adaptive", *args) == 0
    first = (tmp_path / "a" / "records.jsonl").read_bytes()
    assert solve_cli(tmp_path / "a", "ias-adaptive", *args) == 0  # nothing left: no new record
    assert (tmp_path / "a" / "records.jsonl").read_bytes() == first
    assert solve_cli(tmp_path / "b", "ias-adaptive", *args, limit=2) == 0  # half, then resumed
    assert solve_cli(tmp_path / "b", "ias-adaptive", *args) == 0
    assert (tmp_path / "b" / "records.jsonl").read_bytes() == first
    assert b"wall" not in first


def test_solve_and_solve_many_agree(zoo_policy, zoo_prm):
    solver = ias.Solver(zoo_policy, zoo_prm, strategy="ias-adaptive", n_max=N_MAX)
    questions = ["Compute 12+7*3.", "Compute 81-4*9.", "Compute 5*6+7."]
    together = solver.solve_many(questions)
    for question, many in zip(questions, together):
        one = solver.solve(question)
        assert (one.text, one.answer, one.generated_tokens, one.n_samples) == (
            many.text,
            many.answer,
            many.generated_tokens,
            many.n_samples,
        )
        assert one.confidence == pytest.approx(many.confidence, abs=1e-5)
        assert one.generated_tokens == sum(s.generated_tokens for s in one.samples) > 0
        assert one.wall_s > 0 and one.waves


def test_ask_prints_the_answer_its_confidence_and_the_compute(capsys, zoo_policy, zoo_prm):
    question = "Compute 12+7*3."
    assert main(["ask", question, "--n-max", str(N_MAX)]) == 0
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.strip().splitlines())
    expected = ias.Solver(zoo_policy, zoo_prm, strategy="ias-adaptive", n_max=N_MAX).solve(question)
    assert lines["answer"] == expected.answer
    assert float(lines["confidence"]) == pytest.approx(expected.confidence, abs=1e-3)
    assert f"{expected.n_samples} samples, {expected.generated_tokens} generated tokens" in lines["compute"]
    assert (
        main(["ask", question, "--strategy", "esc", "--n-max", str(N_MAX), "--window", "3", "--prm", "none", "--json"])
        == 0
    )
    answer = json.loads(capsys.readouterr().out)
    assert answer["usage"]["samples"] == len(answer["samples"]) > 0
    assert answer["usage"]["generated_tokens"] == sum(s["generated_tokens"] for s in answer["samples"])
    assert answer["usage"]["prm_tokens"] == 0 and 0 <= answer["confidence"] <= 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["solve", "--strategy", "nope"], "unknown strategy 'nope'"),
        (["solve", "--strategy", "esc", "--coverage", "0.9"], "--coverage is not a setting of strategy 'esc'"),
        (["solve", "--strategy", "ias-bon", "--prm", "none"], "strategy 'ias-bon' needs a PRM"),
        (["solve", "--strategy", "bon", "--tuning", "x.json"], "--tuning configures ias-adaptive"),
        (["solve", "--strategy", "ias-adaptive", "--n-max", "99999"], "past the ceiling"),
        (["ask", "Compute 1+1.", "--strategy", "nope"], "unknown strategy 'nope'"),
        (["ask", "Compute 1+1.", "--n", "4"], "--n is not a setting of strategy 'ias-adaptive'"),
    ],
)
def test_wrong_strategy_or_flag_is_one_line_and_leaves_no_folder(argv, message, tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*argv, *(["--out", str(out), "--limit", "2"] if argv[0] == "solve" else [])]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_tuning_gives_ias_adaptive_its_settings_and_map_and_flags_win(tmp_path):
    scores = np.linspace(0, 1, 21)
    fitted = IsotonicRegression().fit(scores, (scores > 0.5).astype(float))
    mapping = fitted.to_dict()
    tuning = {
        "adaptive": {"settings": {"target": 0.8, "price": 0.001, "wave": 2, "prior": 1.0}, "confidence_map": mapping}
    }
    (tmp_path / "eval" / "tune").mkdir(parents=True)
    (tmp_path / "eval" / "tune" / "tuning.json").write_text(json.dumps(tuning))
    out = tmp_path / "run"
    assert (
        solve_cli(out, "ias-adaptive", "--tuning", str(tmp_path / "eval"), "--target", "0.7", "--n-max", str(N_MAX))
        == 0
    )
    config = json.loads((out / "config.json").read_text())
    assert (config["target"], config["price"], config["wave"], config["prior"]) == (0.7, 0.001, 2, 1.0)
    assert config["confidence_map_sha"] == content_sha(mapping)
    for r in read_records(out / "records.jsonl"):  # the confidence is the chosen score through the map
        best = r["samples"][r["choices"]["best"]["index"]]
        assert r["confidence"] == pytest.approx(float(fitted.predict(np.array([best["score"]]))[0]), abs=1e-6)


def test_a_mean_budget_from_the_tuning_file_is_a_strategy_of_its_own(tmp_path, capsys):
    """`--strategy ias-adaptive@B` runs ias-adaptive with the tuning file's settings for a mean
    budget of B samples (the ones `ias eval` reported as ias-adaptive@B), its map included."""
    mapping = IsotonicRegression().fit(np.linspace(0, 1, 11), np.linspace(0, 1, 11) > 0.4).to_dict()
    main_settings = {"target": 0.8, "price": 0.001, "wave": 2, "prior": 1.0, "growth": 2.0}
    cheap = {"target": 0.9, "price": 0.005, "wave": 1, "prior": 4.0, "growth": 1.5}
    tuning = tmp_path / "tuning.json"
    tuning.write_text(
        json.dumps({"adaptive": {"settings": main_settings, "by_budget": {"4": cheap}, "confidence_map": mapping}})
    )
    out = tmp_path / "at4"
    assert solve_cli(out, "ias-adaptive@4", "--tuning", str(tuning), "--n-max", str(N_MAX)) == 0
    config = json.loads((out / "config.json").read_text())
    assert {k: config[k] for k in cheap} == cheap and config["confidence_map_sha"] == content_sha(mapping)
    assert "strategy: ias-adaptive@4" in (out / "config.yaml").read_text()  # the name asked, to rerun it
    capsys.readouterr()
    for argv, message in (
        (["--tuning", str(tuning)], "the tuning file has no 'ias-adaptive@8'; it holds: ias-adaptive, ias-adaptive@4"),
        ([], "strategy 'ias-adaptive@8' is a tuned setting: give --tuning"),
    ):
        assert solve_cli(tmp_path / "at8", "ias-adaptive@8", *argv) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1 and not (tmp_path / "at8").exists()


def test_bon_aggregation_scores_samples_by_their_steps(tmp_path):
    assert solve_cli(tmp_path / "run", "bon", "--n", "4", "--aggregation", "min") == 0
    for r in read_records(tmp_path / "run" / "records.jsonl"):
        for s in r["samples"]:
            assert s["score"] == pytest.approx(min(s["step_scores"]))
        best = max(range(4), key=lambda j: (r["samples"][j]["answer"] is not None, r["samples"][j]["score"], -j))
        assert r["choices"]["best"]["index"] == best and r["correct"] == r["samples"][best]["correct"]


def test_a_problem_whose_samples_the_prm_cannot_read_is_summarised(tmp_path):
    """A PRM context of 40 tokens reads none of the longer questions' samples: those records
    have no "best" choice; the summary reports the rules every record has, never a crash."""
    import ias

    summary = ias.solve(
        strategy="ias-bon", settings={"n_max": 4}, limit=6, out=tmp_path, progress=False, prm_options={"max_length": 40}
    )
    records = read_records(tmp_path / "records.jsonl")
    unread = [r for r in records if "best" not in r["choices"]]
    assert 0 < len(unread) < len(records)
    assert all(s["score"] is None and s["prm_tokens"] == 0 for r in unread for s in r["samples"])
    assert set(summary["by_selection"]) == {"majority"}
