"""The Monte-Carlo rollout store on the built-in task: record layout, unbiased targets, resume, SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from ias.calibration.rollout import rollout
from ias.calibration.store import chunks, load_targets, resume_plan
from ias.errors import UserError
from ias.records import read_records
from ias.specs import RolloutSettings
from ias.tasks.base import get_task
from ias.types import split_steps

SMALL = dict(n_traj=2, n_mc=2, max_prefix=20, seed=0, limit=4, batch_problems=2, progress=False)


@pytest.fixture(scope="module")
def policy(zoo_policy):
    """The shared zoo policy, on one torch thread for this module's tests."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield zoo_policy
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def task():
    return get_task("arith")


class Counting:
    """A policy that counts its calls and sampled rows."""

    def __init__(self, policy):
        self.policy, self.calls, self.rows = policy, 0, 0
        self.name, self.defaults = policy.name, policy.defaults

    def sample(self, prompts, n, params, seeds):
        self.calls += 1
        self.rows += len(prompts) * n
        return self.policy.sample(prompts, n, params, seeds)


def _run(task, policy, out, **kw):
    kw = {**SMALL, **kw}
    settings = RolloutSettings(**{key: kw.pop(key) for key in ("n_traj", "n_mc", "max_prefix")})
    return rollout(task, "calib", policy, settings, out=out, **kw)


def test_records_targets_and_summary(tmp_path, task, policy):
    counting = Counting(policy)
    summary = _run(task, counting, tmp_path / "r")
    assert counting.calls == 4  # two batched calls per chunk of 2 problems
    records = read_records(tmp_path / "r" / "rollouts.jsonl")
    problems = {p.id: p for p in task.problems("calib", 4)}
    assert [r["id"] for r in records] == list(problems)
    n_mc_targets = 0
    for r in records:
        problem = problems[r["id"]]
        assert (r["question"], r["answer"]) == (problem.question, problem.answer)
        assert [tr["index"] for tr in r["trajectories"]] == [0, 1]
        for tr in r["trajectories"]:
            assert tr["steps"] == split_steps(tr["text"])
            assert tr["correct"] == task.grade(problem, tr["text"])
            big_t = len(tr["steps"])
            assert [tg["t"] for tg in tr["targets"]] == list(range(min(big_t, 21))) + [big_t]
            *mc, final = tr["targets"]
            assert final == {
                "t": big_t,
                "correct": int(tr["correct"]),
                "n": 1,
                "p": float(tr["correct"]),
                "final": True,
            }
            for tg in mc:  # every continuation counts
                assert tg["n"] == 2 and len(tg["outcomes"]) == 2
                assert tg["correct"] == sum(tg["outcomes"]) and tg["p"] == tg["correct"] / 2
            n_mc_targets += len(mc)
            assert tr["usage"]["samples"] == 1 and tr["mc_usage"]["samples"] == 2 * len(mc)
            assert tr["mc_usage"]["generated_tokens"] > 0
        assert r["usage"]["samples"] == sum(1 + tr["mc_usage"]["samples"] for tr in r["trajectories"])
    assert counting.rows == 8 + 2 * n_mc_targets
    assert summary["n_problems"] == 4 and summary["n_trajectories"] == 8
    assert summary["n_prefix_targets"] == n_mc_targets and summary["n_rollouts"] == counting.rows
    assert summary["usage"]["total"]["samples"] == counting.rows
    assert summary["usage"]["total"]["generated_tokens"] == sum(r["usage"]["generated_tokens"] for r in records)
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["n_rollouts"] == counting.rows
    assert json.loads((tmp_path / "r" / "config.json").read_text())["n_mc"] == 2

    rows = load_targets(tmp_path / "r")
    assert len(rows) == n_mc_targets + 8
    first = rows[0]
    assert (first.problem_id, first.traj, first.t, first.steps) == (records[0]["id"], 0, 0, [])
    assert first.question == records[0]["question"] and not first.final
    assert sum(row.final for row in rows) == 8
    assert len(load_targets(tmp_path / "r", include_final=False)) == n_mc_targets


def test_max_prefix_caps_the_continued_prefixes(tmp_path, task, policy):
    _run(task, policy, tmp_path / "r", limit=2, max_prefix=1)
    for r in read_records(tmp_path / "r" / "rollouts.jsonl"):
        for tr in r["trajectories"]:
            big_t = len(tr["steps"])
            assert [tg["t"] for tg in tr["targets"]] == list(range(min(big_t, 2))) + [big_t]


def test_resume_recomputes_whole_chunks_to_the_same_bytes(tmp_path, task, policy):
    _run(task, policy, tmp_path / "full")
    full = (tmp_path / "full" / "rollouts.jsonl").read_bytes()
    lines = full.splitlines(keepends=True)
    assert len(lines) == 4
    store = tmp_path / "part" / "rollouts.jsonl"
    store.parent.mkdir()
    (tmp_path / "part" / "config.json").write_bytes((tmp_path / "full" / "config.json").read_bytes())

    store.write_bytes(b"".join(lines[:2]))  # the last chunk's records are gone
    counting = Counting(policy)
    _run(task, counting, tmp_path / "part")
    assert store.read_bytes() == full and counting.calls == 2

    store.write_bytes(b"".join(lines[:3]) + lines[3][:40])  # a crash inside the last chunk's write
    _run(task, policy, tmp_path / "part")
    assert store.read_bytes() == full

    counting = Counting(policy)
    summary = _run(task, counting, tmp_path / "part")  # complete: nothing to sample
    assert counting.calls == 0 and store.read_bytes() == full and summary["n_problems"] == 4


def test_other_settings_are_refused_and_limit_may_grow(tmp_path, task, policy):
    _run(task, policy, tmp_path / "r", limit=2)
    with pytest.raises(UserError, match="other settings"):
        _run(task, policy, tmp_path / "r", limit=2, n_mc=3)
    with pytest.raises(UserError, match="n_mc"):
        _run(task, policy, tmp_path / "x", n_mc=0)
    summary = _run(task, policy, tmp_path / "r", limit=3)
    assert summary["n_problems"] == 3
    assert [r["id"] for r in read_records(tmp_path / "r" / "rollouts.jsonl")] == [
        p.id for p in task.problems("calib", 3)
    ]
    # A smaller limit later keeps what was rolled out, and the summary describes what
    # calibration will read: the whole store.
    summary = _run(task, policy, tmp_path / "r", limit=1)
    assert summary["n_problems"] == 3 == len({row.problem_id for row in load_targets(tmp_path / "r")})


def test_resume_plan():
    plan = chunks(["a", "b", "c", "d", "e"], 2)
    assert plan == [["a", "b"], ["c", "d"], ["e"]]
    assert resume_plan(plan, []) == (0, [["a", "b"], ["c", "d"], ["e"]])
    assert resume_plan(plan, ["a", "b", "c"]) == (2, [["c", "d"], ["e"]])  # the torn chunk is redone whole
    assert resume_plan(plan, ["a", "b", "c", "d", "e"]) == (5, [])
    assert resume_plan(plan, ["a", "b", "z"]) == (3, [["c", "d"], ["e"]])  # not ours: kept, ignored
    assert resume_plan(plan, ["c", "a", "b"]) == (3, [["d"], ["e"]])  # partial chunk mid-file: no duplicate


_SCRIPT = textwrap.dedent(
    """
    import sys, time, torch
    torch.set_num_threads(1)
    from ias.calibration.rollout import rollout
    from ias.policy.base import load_policy
    from ias.specs import RolloutSettings

    class Slow:  # gives the test time to kill the run between chunks or inside one
        def __init__(self, policy):
            self.policy, self.name, self.defaults = policy, policy.name, policy.defaults
        def sample(self, *args):
            time.sleep(0.2)
            return self.policy.sample(*args)

    rollout("arith", "calib", Slow(load_policy("arith-weak")), RolloutSettings(2, 2, 20), sys.argv[1], 0,
            limit=6, batch_problems=1, progress=False)
    """
)


@pytest.mark.slow
def test_sigkill_then_rerun_equals_an_uninterrupted_run(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    ref = subprocess.Popen(
        [sys.executable, "-c", _SCRIPT, str(reference)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", _SCRIPT, str(killed)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    store = killed / "rollouts.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None and (not store.exists() or not store.read_bytes()):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 1 <= len(read_records(store)) < 6, "the run should have been killed midway"
    done = subprocess.run([sys.executable, "-c", _SCRIPT, str(killed)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert ref.wait() == 0, ref.stderr.read().decode()
    assert store.read_bytes() == (reference / "rollouts.jsonl").read_bytes()
    assert (killed / "config.json").read_bytes() == (reference / "config.json").read_bytes()
    assert len(read_records(store)) == 6
