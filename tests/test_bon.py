"""Fixed-budget Best-of-N over a dataset with the shipped zoo models: records, usage, resume."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import ias
from ias.errors import UserError
from ias.records import read_records
from ias.tasks.base import get_task


def _solve(out, **kw):
    args = dict(
        task="arith",
        split="test",
        policy="arith-weak",
        prm="arith-prm",
        n=4,
        limit=6,
        out=out,
        progress=False,
        batch_problems=3,
    )
    args.update(kw)
    return ias.solve(**args)


def test_records_and_summary_are_consistent(tmp_path):
    summary = _solve(tmp_path / "run")
    records = read_records(tmp_path / "run" / "records.jsonl")
    task = get_task("arith")
    problems = {p.id: p for p in task.problems("test", 6)}
    assert [r["id"] for r in records] == list(problems)
    for r in records:
        assert len(r["samples"]) == 4
        for s in r["samples"]:
            assert s["correct"] == task.grade(problems[r["id"]], s["text"])
            assert len(s["step_scores"]) == max(1, len([x for x in s["text"].split("\n\n") if x.strip()]))
            assert all(0.0 <= x <= 1.0 for x in s["step_scores"])
            assert s["score"] == s["step_scores"][-1]  # aggregation "last"
        best = max(range(4), key=lambda j: (r["samples"][j]["answer"] is not None, r["samples"][j]["score"], -j))
        assert r["choices"]["best"]["index"] == best
        assert r["correct"] == r["samples"][best]["correct"]
        assert r["usage"]["generated_tokens"] == sum(s["generated_tokens"] for s in r["samples"])
        assert r["usage"]["prm_tokens"] == sum(s["prm_tokens"] for s in r["samples"]) > 0
        assert r["usage"]["samples"] == 4
    assert summary["n_problems"] == 6
    assert summary["accuracy"] == pytest.approx(sum(r["correct"] for r in records) / 6, abs=1e-4)
    assert summary["usage"]["generated_tokens"] == sum(r["usage"]["generated_tokens"] for r in records)
    assert set(summary["by_selection"]) == {"best", "majority", "weighted"}
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert on_disk["accuracy"] == summary["accuracy"]


def test_same_seed_same_records_whatever_the_batching(tmp_path):
    _solve(tmp_path / "a", batch_problems=3)
    _solve(tmp_path / "b", batch_problems=6)
    _solve(tmp_path / "c", seed=1)
    a, b, c = (read_records(tmp_path / x / "records.jsonl") for x in "abc")
    assert [[s["text"] for s in r["samples"]] for r in a] == [[s["text"] for s in r["samples"]] for r in b]
    for ra, rb in zip(a, b):
        for sa, sb in zip(ra["samples"], rb["samples"]):
            assert sa["step_scores"] == pytest.approx(sb["step_scores"], abs=1e-5)
    assert [[s["text"] for s in r["samples"]] for r in a] != [[s["text"] for s in r["samples"]] for r in c]


def test_resume_extends_without_repeating(tmp_path):
    _solve(tmp_path / "run", limit=3)
    first = read_records(tmp_path / "run" / "records.jsonl")
    summary = _solve(tmp_path / "run", limit=6)
    records = read_records(tmp_path / "run" / "records.jsonl")
    assert [r["id"] for r in records] == [f"arith-test-{i:05d}" for i in range(6)]
    assert records[:3] == first
    assert summary["n_problems"] == 6


def test_other_settings_in_the_same_folder_are_refused(tmp_path):
    _solve(tmp_path / "run", limit=2)
    with pytest.raises(UserError, match="other settings"):
        _solve(tmp_path / "run", limit=2, n=8)


def test_majority_without_prm(tmp_path):
    summary = _solve(tmp_path / "run", prm=None, selection="majority", limit=3)
    assert summary["usage"]["prm_tokens"] == 0 and set(summary["by_selection"]) == {"majority"}
    with pytest.raises(UserError, match="needs a PRM"):
        _solve(tmp_path / "other", prm=None)


def test_killed_midway_then_rerun_loses_and_repeats_nothing(tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "ias.cli",
        "solve",
        "--limit",
        "12",
        "--n",
        "4",
        "--batch-problems",
        "2",
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = out / "records.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not records.exists() or records.read_text().count("\n") < 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = len(read_records(records))
    assert 2 <= partial < 12, "the run should have been killed midway"
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "120"})
    assert done.returncode == 0, done.stderr
    ids = [r["id"] for r in read_records(records)]
    assert sorted(ids) == [f"arith-test-{i:05d}" for i in range(12)]


def test_a_resume_with_other_prm_scoring_is_refused_but_not_other_devices(tmp_path):
    _solve(tmp_path / "run", limit=2, n=2, prm_options={"max_length": 20})
    with pytest.raises(UserError, match=r"other settings \(prm_options\)"):
        _solve(tmp_path / "run", limit=4, n=2)  # would append records scored without the limit
    _solve(tmp_path / "run", limit=3, n=2, prm_options={"max_length": 20, "batch_size": 5, "device": "cpu"})
    assert len(read_records(tmp_path / "run" / "records.jsonl")) == 3


def test_a_calibrator_refitted_in_the_same_folder_is_another_calibrator(tmp_path, small_rollouts):
    ias.calibrate(small_rollouts, method="temperature", held_out=0, out=tmp_path / "cal")
    _solve(tmp_path / "run", limit=2, n=2, calibrator=tmp_path / "cal")
    _solve(tmp_path / "run", limit=3, n=2, calibrator=tmp_path / "cal")  # the same calibrator resumes
    ias.calibrate(small_rollouts, method="histogram", held_out=0, out=tmp_path / "cal")
    with pytest.raises(UserError, match=r"other settings \(calibrator_sha\)"):
        _solve(tmp_path / "run", limit=4, n=2, calibrator=tmp_path / "cal")


def test_wall_time_is_timed_per_problem_and_summed_over_the_problems_asked_for(tmp_path):
    four = _solve(tmp_path / "run", limit=4, n=2, batch_problems=2)
    timing = read_records(tmp_path / "run" / "timing.jsonl")
    assert [t["id"] for t in timing] == [r["id"] for r in read_records(tmp_path / "run" / "records.jsonl")]
    assert four["wall_s"] == pytest.approx(sum(t["wall_s"] for t in timing), abs=0.02)
    assert four["untimed_problems"] == 0 and four["wall_s"] <= four["wall_s_this_run"] + 0.01
    two = _solve(tmp_path / "run", limit=2, n=2)  # nothing left to do: the first two problems' share
    assert two["wall_s"] == pytest.approx(sum(t["wall_s"] for t in timing[:2]), abs=0.01)
    assert 0 < two["wall_s"] < four["wall_s"]
