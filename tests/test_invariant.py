"""The invariant of one implementation per method: `ias solve --strategy M` gives, problem by
problem, the answers, samples and generated tokens that `ias eval` reports for M on the
same problems and seed (its pool as drawn: one ordering). Zoo policy and PRM, every method."""

from __future__ import annotations

import dataclasses
import json

import pytest

import ias
from ias.evaluation import Budget, _method
from ias.methods import method_names

LIMIT, N_MAX = 6, 8
BUDGET = Budget(n_max=N_MAX, k_max=2, m_max=2, beam_rounds=3)
#: eval's name for each registered method's figures (bon: its largest fixed N).
EVAL_NAME = {"bon": f"bon@{N_MAX}"}


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    strategies = ["bon", *[m for m in method_names() if m != "bon"]]
    ias.evaluate(
        limit=LIMIT,
        n_max=N_MAX,
        k_max=BUDGET.k_max,
        m_max=BUDGET.m_max,
        beam_rounds=BUDGET.beam_rounds,
        orderings=1,
        strategies=strategies,
        out=out,
        progress=False,
    )
    return {r["id"]: r["methods"] for r in map(json.loads, (out / "records.jsonl").read_text().splitlines())}


@pytest.mark.parametrize("name", method_names())
def test_solve_spends_and_answers_what_eval_reports(name, evaluated, tmp_path):
    method = _method("bon" if name == "bon" else name, BUDGET, **({"n": N_MAX} if name == "bon" else {}))
    settings = {f.name: getattr(method, f.name) for f in dataclasses.fields(method) if f.name != "confidence_map"}
    summary = ias.solve(
        strategy=name, settings=settings, limit=LIMIT, out=tmp_path, progress=False, batch_problems=LIMIT
    )
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert len(records) == LIMIT == summary["n_problems"]
    for record in records:
        reported = evaluated[record["id"]][EVAL_NAME.get(name, name)]
        assert record["answer"] == reported["answer"], (name, record["id"])
        assert record["correct"] == bool(reported["correct"]), (name, record["id"])
        assert record["usage"]["samples"] == reported["samples"], (name, record["id"])
        assert record["usage"]["generated_tokens"] == reported["tokens"], (name, record["id"])
        assert record["usage"]["prm_tokens"] == reported["prm_tokens"], (name, record["id"])
