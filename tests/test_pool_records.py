"""The pool's typed records (`ias.scaling.pool`): today's JSON read and written back byte for
byte, older or smaller records loaded with defaults, and an eval folder written before the
types existed (`tests/data/eval-before-typed`, see tests/data/README.md) resumed unchanged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ias.errors import UserError
from ias.scaling.pool import Outcome, PoolProblem, PoolSample, ProblemOutcomes

BEFORE = Path(__file__).parent / "data" / "eval-before-typed"


def dumps(record: dict) -> str:
    """A record as `ias.records.RecordWriter` writes its line."""
    return json.dumps(record, ensure_ascii=False, allow_nan=False)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def figures(summary: dict) -> dict:
    """A summary without what differs from run to run (wall time)."""
    methods = {name: {k: v for k, v in m.items() if k != "wall_s"} for name, m in summary["methods"].items()}
    return {
        "methods": methods,
        "frontier": summary["frontier"],
        "n_problems": summary["n_problems"],
        "n_max": summary["n_max"],
        "orderings": summary["orderings"],
        "usage": summary["pool"]["usage"],
    }


@pytest.mark.parametrize("name, kind", [("pool/records.jsonl", PoolProblem), ("records.jsonl", ProblemOutcomes)])
def test_records_written_before_the_types_are_read_and_written_back_byte_for_byte(name, kind):
    written = lines(BEFORE / name)
    assert written
    assert [dumps(kind.from_json(json.loads(line)).to_json()) for line in written] == written


def test_typed_pool_records_read_as_the_dicts_did():
    for line in lines(BEFORE / "pool" / "records.jsonl"):
        data = json.loads(line)
        record = PoolProblem.from_json(data)
        assert record.id == data["id"] and record.reading().score == data["question_reading"]["score"]
        assert [s.correct for s in record.samples] == [s["correct"] for s in data["samples"]]
        assert record.p_true == sum(s["correct"] for s in data["samples"]) / len(data["samples"])
        assert record.choices["best"].index == data["choices"]["best"]["index"]
        assert record.usage.generated_tokens == sum(s["generated_tokens"] for s in data["samples"])
        # The raw PRM's scores live in memory (the eval reads them for the uncalibrated twins).
        assert all(s.raw() == s.score and not s.has_raw for s in record.samples)
        raw = record.with_raw_samples([0.5] * len(record.samples)).with_raw_question(None)
        assert [s.raw() for s in raw.samples] == [0.5] * len(record.samples) and raw.reading().raw() is None
        assert raw.to_json()["samples"][0]["raw_score"] == 0.5 and record.to_json() == data


def test_a_smaller_or_older_record_gets_defaults_and_keeps_unknown_keys():
    sample = {
        "text": "1",
        "answer": "1",
        "correct": True,
        "score": 0.5,
        "generated_tokens": 3,
        "prm_tokens": 4,
        "finish_reason": "eos",
        "note": "kept",
    }
    record = PoolProblem.from_json({"id": "a", "question": "q", "samples": [sample], "later": 1})
    [only] = record.samples
    assert (
        only.prompt_tokens == 0
        and only.step_scores is None
        and only.logprobs is None
        and only.extra == {"note": "kept"}
    )
    assert record.question_reading is None and record.choices == {} and record.reference == ""
    again = record.to_json()
    assert again["later"] == 1 and again["samples"][0]["note"] == "kept" and "logprobs" not in again["samples"][0]
    with pytest.raises(UserError, match="no reading of the question alone"):
        record.reading()


@pytest.mark.parametrize(
    "broken, message",
    [
        ({"id": "a", "question": "q"}, "pool record a lacks 'samples'"),
        ({"id": "a", "question": "q", "samples": []}, "pool record a has no samples"),
        ({"id": "a", "question": "q", "samples": [{"text": "x"}]}, "a pool sample lacks 'answer'"),
        ({"question": "q", "samples": [{}]}, "lacks 'id'"),
    ],
)
def test_a_record_that_is_no_pool_record_is_one_line(broken, message):
    with pytest.raises(UserError, match=message):
        PoolProblem.from_json(broken)


def test_an_outcome_survives_its_json():
    outcome = Outcome("12", 0.5, 2.5, 41.0, 80.0, 0.73219)
    assert Outcome.from_json(json.loads(dumps(outcome.to_json()))) == Outcome("12", 0.5, 2.5, 41.0, 80.0, 0.7322)
    assert (
        Outcome.from_json({"answer": None, "correct": False, "samples": 1, "tokens": 3, "prm_tokens": 0}).confidence
        is None
    )  # records from before confidences
    with pytest.raises(UserError, match="lacks 'tokens'"):
        Outcome.from_json({"answer": None, "correct": False, "samples": 1})


def test_best_of_n_builds_typed_records_and_writes_their_json():
    from ias.policy.base import SamplingParams, load_policy
    from ias.prm.base import load_prm
    from ias.scaling.bon import BestOfN
    from ias.tasks.base import get_task

    task, policy, prm = get_task("arith"), load_policy("arith-weak"), load_prm("arith-prm")
    problems = task.problems("test", 2)
    bon = BestOfN(n=3, score_question=True)
    params = SamplingParams(temperature=1.0, max_tokens=64, logprobs=True)
    records = bon.records(problems, task, policy, prm, params, seed=1)
    written = bon.run(problems, task, policy, prm, params, seed=1)
    assert [r.to_json() for r in records] == written
    assert [PoolProblem.from_json(json.loads(dumps(w))) for w in written] == records
    for r in records:
        assert isinstance(r.samples[0], PoolSample) and r.reading().prm_tokens > 0
        assert r.answer == r.choices["best"].answer == r.samples[r.choices["best"].index].answer


def test_an_eval_folder_written_before_the_types_resumes_unchanged(tmp_path):
    """The folder's pool is accepted (nothing redrawn: its records and timings are the same
    bytes) and the methods replayed on it give the figures it holds."""
    import ias

    out = tmp_path / "eval"
    shutil.copytree(BEFORE, out)
    before = {name: (BEFORE / name).read_bytes() for name in ("pool/records.jsonl", "pool/timing.jsonl")}
    summary = ias.evaluate(
        limit=3, n_max=4, orderings=2, strategies=["bon", "ias-bon", "ias-adaptive", "sc"], out=out, progress=False
    )
    assert {name: (out / name).read_bytes() for name in before} == before
    assert figures(summary) == figures(json.loads((BEFORE / "summary.json").read_text()))
    assert lines(out / "records.jsonl") == lines(BEFORE / "records.jsonl")
