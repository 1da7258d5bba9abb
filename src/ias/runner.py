"""Runs a strategy over a dataset in batches of problems, resumably, and summarises it.

The output folder holds `config.json` (what was asked), `records.jsonl` (one record per
finished problem, appended batch by batch), `timing.jsonl` (each problem's wall time: its
batch's, shared by generated tokens; kept apart so that records stay the same bytes on any
machine) and `summary.json`. Rerunning into the same folder skips finished problems; a
folder holding a different run is refused.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

from ias.executors import Executor, LocalExecutor, Parts
from ias.metrics import bootstrap_ci
from ias.policy.base import Policy, SamplingParams
from ias.prm.base import PRM
from ias.records import RecordWriter, read_records
from ias.stage import Meter, Plan, run_stage
from ias.tasks.base import Task
from ias.tasks.grading import recording_timeouts
from ias.types import Problem

RECORDS_FILE = "records.jsonl"
TIMING_FILE = "timing.jsonl"
RECORD_KEYS = ("id", "correct", "usage")  # what every strategy's record holds and `summarize` reads


class Strategy(Protocol):
    @property
    def name(self) -> str: ...

    def config(self) -> dict: ...

    def run(
        self,
        problems: Sequence[Problem],
        task: Task,
        policy: Policy,
        prm: PRM | None,
        params: SamplingParams,
        seed: int,
    ) -> list[dict]: ...


def run_dataset(
    strategy: Strategy,
    problems: Sequence[Problem],
    task: Task,
    policy: Policy,
    prm: PRM | None,
    params: SamplingParams,
    seed: int,
    out: Path,
    config: dict,
    batch_problems: int = 32,
    progress: bool = True,
    executor: Executor | None = None,
) -> dict:
    """Solve every problem not yet in `out/records.jsonl`, then write and return the summary.

    `executor` runs the batches elsewhere (a started `RayExecutor`; `policy` and `prm` are
    then unused); records are appended in batch order either way, so the file is the same.
    """
    config = {**config, **strategy.config(), "seed": seed, "sampling": params.to_dict()}
    return run_stage(
        RunStore(Path(out)),
        problems,
        StrategyWork(strategy, params, seed),
        executor or LocalExecutor(Parts(task, policy, prm)),
        config,
        batch_problems=batch_problems,
        desc=strategy.name,
        progress=progress,
    )


class RunStore:
    """A run folder's `records.jsonl` (a finished problem's record is kept and never redone,
    so a resume goes on from the problems without one) and `timing.jsonl`."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.records_path, self.timing_path = folder / RECORDS_FILE, folder / TIMING_FILE

    def resume(self, problems: Sequence[Problem], size: int, meter: Meter) -> Plan:
        stored = read_records(self.records_path, RECORD_KEYS)
        done = {r["id"] for r in stored}
        todo = [p for p in problems if p.id not in done]
        wanted = {p.id for p in problems}
        return Plan(
            [todo[start : start + size] for start in range(0, len(todo), size)],
            meter.units([r for r in stored if r["id"] in wanted]),
        )

    def writer(self) -> TimedWriter:
        return TimedWriter(self.records_path, self.timing_path)

    def summary(self, problems: Sequence[Problem], config: dict, wall_s: float) -> dict:
        """The problems asked for (a folder may hold more, from a run with a larger limit)."""
        wanted = {p.id for p in problems}
        records = [r for r in read_records(self.records_path, RECORD_KEYS) if r["id"] in wanted]
        return summarize(records, config, wall_s, read_timing(self.timing_path))


class TimedWriter:
    """Appends a batch's records, and first their share of the time since the last batch."""

    def __init__(self, records_path: Path, timing_path: Path):
        self._records, self._clock = RecordWriter(records_path), RecordWriter(timing_path)
        self._mark = time.time()

    def write(self, records: list[dict]) -> None:
        now = time.time()
        # Timing first: a crash between the two writes leaves no record untimed.
        self._clock.write(batch_timing(records, now - self._mark))
        self._records.write(records)
        self._mark = now

    def __enter__(self) -> TimedWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._records.close()
        self._clock.close()


@dataclass(frozen=True)
class StrategyWork:
    """A batch's job, picklable so that an executor can run it on another process or node."""

    strategy: Strategy
    params: SamplingParams
    seed: int

    def __call__(self, parts: Parts, problems: Sequence[Problem]) -> list[dict]:
        with recording_timeouts() as timed_out:
            records = self.strategy.run(problems, parts.task, parts.policy, parts.prm, self.params, self.seed)
        if timed_out:
            answers = {p.id: p.answer for p in problems}
            for record in records:
                mark_grade_timeouts(record, answers[record["id"]], timed_out)
        return records


def mark_grade_timeouts(record: dict, reference: str, timed_out: Collection[tuple[str, str]]) -> None:
    """Flag `grade_timeout: true` on every graded answer in `record` (a dict holding `answer`
    and `correct`, at any depth: samples, choices, the record itself) whose grading against
    `reference` timed out, and count the samples (those with a `text`) among them in
    `record["grade_timeouts"]`: such an answer counts as wrong, and the record says so."""
    count = 0

    def visit(node) -> None:
        nonlocal count
        if isinstance(node, dict):
            if "correct" in node and (node.get("answer"), reference) in timed_out:
                node["grade_timeout"] = True
                count += "text" in node
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(record)
    if count:
        record["grade_timeouts"] = count


def batch_timing(records: list[dict], wall_s: float) -> list[dict]:
    """A batch's wall time shared by its records in proportion to their generated tokens
    (evenly when none), so any subset of problems can later be timed on its own."""
    tokens = [r["usage"]["generated_tokens"] for r in records]
    total = sum(tokens)
    return [
        {"id": r["id"], "wall_s": round(wall_s * (t / total if total else 1 / len(records)), 4)}
        for r, t in zip(records, tokens)
    ]


def read_timing(path: Path) -> dict[str, float]:
    """Each problem's wall time; the last line of a problem wins (a batch rerun after a crash)."""
    return {t["id"]: t["wall_s"] for t in read_records(path, ("id", "wall_s"))}


def summarize(records: list[dict], config: dict, wall_s: float, timing: dict[str, float]) -> dict:
    """Accuracy with a 95% bootstrap interval, accuracy of every selection rule, usage totals,
    the samples whose grading timed out (counted wrong, `grade_timeouts`), and the wall time
    of these problems (summed over the runs that solved them; problems solved before ias
    timed them count 0 s and are counted in `untimed_problems`)."""
    n = len(records)
    correct = [float(r["correct"]) for r in records]
    usage_keys = ("prompt_tokens", "generated_tokens", "prm_tokens", "samples")
    usage = {k: sum(r["usage"][k] for r in records) for k in usage_keys}
    # The rules every record has a choice for (a problem whose samples the PRM read none of has no "best").
    selections = sorted(set.intersection(*(set(r.get("choices", {})) for r in records))) if records else []
    return {
        "strategy": config.get("strategy"),
        "task": config.get("task"),
        "split": config.get("split"),
        "policy": config.get("policy"),
        "prm": config.get("prm"),
        "n_problems": n,
        "accuracy": round(sum(correct) / n, 4) if n else None,
        "ci95": bootstrap_ci(correct) if n else None,
        "by_selection": {how: round(sum(r["choices"][how]["correct"] for r in records) / n, 4) for how in selections},
        "usage": usage,
        "tokens_per_problem": round(usage["generated_tokens"] / n, 1) if n else None,
        "wall_s_this_run": round(wall_s, 2),
        "wall_s": round(sum(timing.get(r["id"], 0.0) for r in records), 2),
        "untimed_problems": sum(r["id"] not in timing for r in records),
        "grade_timeouts": sum(r.get("grade_timeouts", 0) for r in records),
        "config": config,
    }
