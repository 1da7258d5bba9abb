"""Monte-Carlo rollouts into a resumable store (SPEC §2): the data every calibrator learns from.

For each chunk of `batch_problems` problems: one batched policy call samples `n_traj`
trajectories per problem, a second continues every prefix t = 0 .. min(T, max_prefix+1)-1
of every trajectory `n_mc` times; every continuation is graded and counts (nothing is
resampled or filtered), and the trajectory's own correctness is kept as the t = T target.
The chunk's records are then appended in one synced write (see `store.py` for the layout
and for how a crash inside a chunk is undone).

Every sample's seed derives from (seed, problem id, ...), never from the batch, so a
resumed run writes exactly the bytes an uninterrupted one writes.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ias.calibration.montecarlo import Trajectory, prefix_targets, sample_trajectories
from ias.calibration.store import RolloutStore, chunks, resume_plan, rollout_count
from ias.errors import UserError
from ias.executors import Executor, LocalExecutor, Parts
from ias.policy.base import Policy, SamplingParams, load_policy
from ias.specs import RolloutSettings
from ias.stage import Meter, Plan, run_stage
from ias.tasks.base import Task, get_task
from ias.tasks.grading import recording_timeouts
from ias.types import Problem, Usage


def rollout(
    task: Task | str,
    split: str,
    policy: Policy | str,
    settings: RolloutSettings,
    out: str | Path,
    seed: int,
    limit: int | None = None,
    batch_problems: int = 16,
    progress: bool = True,
    *,
    params: SamplingParams | None = None,
    config: dict | None = None,
    executor: Executor | None = None,
) -> dict:
    """Fill `out/rollouts.jsonl` for the split's problems (resuming), then write and return the summary.

    `task` and `policy` are objects or names (`get_task` / `load_policy`); `params` default
    to the policy's own sampling settings (the success probability is that of the policy
    *as it samples*). `config` adds or overrides entries of `out/config.json` (the API puts
    the task spec and its options there). A folder holding rollouts with other settings is
    refused; `limit` may change between runs.

    `executor` runs the chunks elsewhere (a started `RayExecutor`, whose actors hold their
    own policy: `policy` is then only its name); the store gets the same bytes either way.
    """
    check_settings(settings, batch_problems, limit)
    task = get_task(task) if isinstance(task, str) else task
    policy_name = policy if isinstance(policy, str) else getattr(policy, "name", type(policy).__name__)
    executor = executor or LocalExecutor(Parts(task, load_policy(policy) if isinstance(policy, str) else policy))
    params = params or executor.defaults
    problems = _problems(task, split, limit)
    config = {
        "kind": "rollout",
        "task": task.name,
        "task_options": {},
        "split": split,
        "policy": policy_name,
        "n_traj": settings.n_traj,
        "n_mc": settings.n_mc,
        "max_prefix": settings.max_prefix,
        "seed": seed,
        "sampling": params.to_dict(),
        "limit": limit,
        **(config or {}),
    }
    # The whole store is summarised, which is what calibration reads: a rerun with a smaller
    # limit keeps (and reports) the problems already rolled out.
    return run_stage(
        RolloutFolder(Path(out)),
        problems,
        RolloutWork(settings, params, seed),
        executor,
        config,
        batch_problems=batch_problems,
        desc="rollout",
        progress=progress,
        meter=RolloutMeter(max_rollouts(settings)),
    )


def check_settings(settings: RolloutSettings, batch_problems: int, limit: int | None) -> None:
    """Counts a rollout can run with, or a one-line error naming the first that it cannot."""
    for name, value, least in (
        ("n_traj", settings.n_traj, 1),
        ("n_mc", settings.n_mc, 1),
        ("max_prefix", settings.max_prefix, 0),
        ("batch_problems", batch_problems, 1),
    ):
        if not isinstance(value, int) or value < least:
            raise UserError(f"{name} must be a whole number >= {least}, got {value!r}")
    if limit is not None and limit < 1:
        raise UserError(f"limit must be >= 1, got {limit}")


def _problems(task: Task, split: str, limit: int | None) -> list[Problem]:
    problems = task.problems(split, limit)
    if not problems:
        raise UserError(f"task '{task.name}' split '{split}' has no problems")
    if len({p.id for p in problems}) != len(problems):
        raise UserError(f"task '{task.name}' split '{split}' repeats problem ids; ids must be unique")
    return problems


def max_rollouts(settings: RolloutSettings) -> int:
    """Policy samples one problem costs at most (every trajectory continued at every prefix)."""
    return settings.n_traj * (1 + (settings.max_prefix + 1) * settings.n_mc)


class RolloutMeter(Meter):
    """The progress bar counts rollouts. What a problem needs depends on its trajectories'
    lengths: the total starts at the most it can be, then is re-estimated from the problems done."""

    unit = "rollout"

    def __init__(self, most_per_problem: int):
        super().__init__()
        self.most_per_problem = most_per_problem

    def units(self, records: Sequence[dict]) -> int:
        return sum(rollout_count(r) for r in records)

    def estimate(self, first: bool) -> int:
        left = self.problems - self.done_problems
        if first:
            return self.done + left * self.most_per_problem
        return self.done + round(left * self.done / self.done_problems)


class RolloutFolder(RolloutStore):
    """The store as a stage sees it: resumed by whole chunks, summarised whole."""

    @property
    def folder(self) -> Path:
        return self.out

    def resume(self, problems: Sequence[Problem], size: int, meter: Meter) -> Plan:
        """Cut the store back to whole chunks (`resume_plan`) and plan the rest, the problems
        in fixed chunks of `size`; `meter` counts what the kept records of `problems` hold."""
        by_id = {p.id: p for p in problems}
        stored = self.records()
        keep, todo = resume_plan(chunks([p.id for p in problems], size), [r["id"] for r in stored])
        self.keep_first(keep)
        done = meter.units([r for r in stored[:keep] if r["id"] in by_id])
        return Plan([[by_id[i] for i in ids] for ids in todo], done)

    def summary(self, problems: Sequence[Problem], config: dict, wall_s: float) -> dict:
        """Of the whole store, `problems` or not: what calibration reads."""
        return summarize(self.records(), config, wall_s)


@dataclass(frozen=True)
class RolloutWork:
    """A chunk's job, picklable so that an executor can run it on another process or node."""

    settings: RolloutSettings
    params: SamplingParams
    seed: int

    def __call__(self, parts: Parts, problems: Sequence[Problem]) -> list[dict]:
        with recording_timeouts() as timed_out:
            records = rollout_chunk(parts.task, parts.policy, problems, self.settings, self.params, self.seed)
        if timed_out:
            count_grade_timeouts(parts.task, records, timed_out)
        return records


def count_grade_timeouts(task: Task, records: list[dict], timed_out: Counter[tuple[str, str]]) -> None:
    """Say where grading timed out (counted as wrong): `grade_timeout: true` on a trajectory whose
    own answer timed out, and `grade_timeouts` on a record, every timed-out grading against its
    reference (trajectories and continuations; a chunk's problems sharing a reference answer
    have them counted on the first)."""
    counted: set[str] = set()
    for record in records:
        reference = record["answer"]
        for trajectory in record["trajectories"]:
            if (task.extract(trajectory["text"]), reference) in timed_out:
                trajectory["grade_timeout"] = True
        if reference not in counted:
            counted.add(reference)
            count = sum(n for (_, ref), n in timed_out.items() if ref == reference)
            if count:
                record["grade_timeouts"] = count


def rollout_chunk(
    task: Task,
    policy: Policy,
    problems: Sequence[Problem],
    settings: RolloutSettings,
    params: SamplingParams,
    seed: int,
) -> list[dict]:
    """The records of one chunk: two batched policy calls (trajectories, then continuations)."""
    trajectories = sample_trajectories(policy, task, problems, settings.n_traj, params, seed)
    flat = [tr for group in trajectories for tr in group]
    targets, _ = prefix_targets(policy, task, flat, settings.n_mc, settings.max_prefix, params, seed)
    per_traj: dict[tuple[str, int], list[dict]] = {}
    mc_usage: dict[tuple[str, int], Usage] = {}
    for target in targets:
        key = (target.problem_id, target.traj)
        entry: dict[str, object] = {"t": target.t, "correct": target.correct, "n": target.n, "p": target.p}
        entry.update({"final": True} if target.final else {"outcomes": target.outcomes})
        per_traj.setdefault(key, []).append(entry)
        mc_usage[key] = mc_usage.get(key, Usage()) + target.usage
    return [_record(problem, group, per_traj, mc_usage) for problem, group in zip(problems, trajectories)]


def _record(
    problem: Problem,
    group: list[Trajectory],
    per_traj: dict[tuple[str, int], list[dict]],
    mc_usage: dict[tuple[str, int], Usage],
) -> dict:
    total = Usage()
    trajectories = []
    for tr in group:
        mc = mc_usage.get((problem.id, tr.index), Usage())
        total = total + tr.usage + mc
        trajectories.append(
            {
                "index": tr.index,
                "text": tr.text,
                "steps": tr.steps,
                "correct": bool(tr.correct),
                "usage": tr.usage.to_dict(),
                "mc_usage": mc.to_dict(),
                "targets": sorted(per_traj[(problem.id, tr.index)], key=lambda e: (e["t"], bool(e.get("final")))),
            }
        )
    return {
        "id": problem.id,
        "question": problem.question,
        "answer": problem.answer,
        "meta": problem.meta,
        "trajectories": trajectories,
        "usage": total.to_dict(),
    }


def summarize(records: list[dict], config: dict, wall_s: float) -> dict:
    """Counts, the policy's accuracy, mean targets, usage split into trajectories and continuations."""
    keys = ("prompt_tokens", "generated_tokens", "prm_tokens", "samples")
    trajs = [tr for r in records for tr in r["trajectories"]]
    traj_usage = {k: sum(tr["usage"][k] for tr in trajs) for k in keys}
    mc_usage = {k: sum(tr["mc_usage"][k] for tr in trajs) for k in keys}
    mc = [tg for tr in trajs for tg in tr["targets"] if not tg.get("final")]
    t0 = [tg["p"] for tr in trajs for tg in tr["targets"][:1] if tg["t"] == 0]
    rollouts = traj_usage["samples"] + mc_usage["samples"]
    return {
        "kind": "rollout",
        "task": config.get("task"),
        "split": config.get("split"),
        "policy": config.get("policy"),
        "n_problems": len(records),
        "n_trajectories": len(trajs),
        "n_prefix_targets": len(mc),
        "n_final_targets": len(trajs),
        "n_rollouts": rollouts,
        "trajectory_accuracy": _mean([float(tr["correct"]) for tr in trajs]),
        "mean_p_t0": _mean(t0),
        "mean_p_prefix": _mean([tg["p"] for tg in mc]),
        "mean_steps": _mean([float(len(tr["steps"])) for tr in trajs]),
        "grade_timeouts": sum(r.get("grade_timeouts", 0) for r in records),
        "usage": {
            "trajectories": traj_usage,
            "continuations": mc_usage,
            "total": {k: traj_usage[k] + mc_usage[k] for k in keys},
        },
        "wall_s_this_run": round(wall_s, 2),
        "config": config,
    }


def _mean(values: list[float]) -> float | None:
    return round(math.fsum(values) / len(values), 4) if values else None
