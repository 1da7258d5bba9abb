"""Runs a strategy over a dataset in batches of problems, resumably, and summarises it.

The output folder holds `config.json` (what was asked), `records.jsonl` (one record per
finished problem, appended batch by batch) and `summary.json`. Rerunning into the same
folder skips finished problems; a folder holding a different run is refused.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

from tqdm import tqdm

from ias.executors import Executor, LocalExecutor, Parts
from ias.metrics import bootstrap_ci
from ias.policy.base import Policy, SamplingParams
from ias.prm.base import PRM
from ias.records import RecordWriter, claim_folder, read_records, write_json
from ias.tasks.base import Task
from ias.types import Problem


class Strategy(Protocol):
    name: str

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
    out = Path(out)
    config = {**config, **strategy.config(), "seed": seed, "sampling": params.to_dict()}
    claim_folder(out / "config.json", config)
    records_path = out / "records.jsonl"
    done = {r["id"] for r in read_records(records_path)}
    todo = [p for p in problems if p.id not in done]
    started = time.time()
    with RecordWriter(records_path) as writer, tqdm(
        total=len(problems), initial=len(problems) - len(todo), desc=strategy.name, unit="problem",
        disable=not progress, dynamic_ncols=True,
    ) as bar:
        batches = [todo[start : start + batch_problems] for start in range(0, len(todo), batch_problems)]
        executor = executor or LocalExecutor(Parts(task, policy, prm))
        for records in executor.map(batches, StrategyWork(strategy, params, seed)):
            writer.write(records)
            bar.update(len(records))
    wanted = {p.id for p in problems}
    records = [r for r in read_records(records_path) if r["id"] in wanted]
    summary = summarize(records, config, time.time() - started)
    earlier = json.loads((out / "summary.json").read_text()).get("wall_s_total", 0.0) if (out / "summary.json").exists() else 0.0
    summary["wall_s_total"] = round(earlier + summary["wall_s_this_run"], 2)  # over every run into this folder
    write_json(out / "summary.json", summary)
    return summary


@dataclass(frozen=True)
class StrategyWork:
    """A batch's job, picklable so that an executor can run it on another process or node."""

    strategy: Strategy
    params: SamplingParams
    seed: int

    def __call__(self, parts: Parts, problems: Sequence[Problem]) -> list[dict]:
        return self.strategy.run(problems, parts.task, parts.policy, parts.prm, self.params, self.seed)


def summarize(records: list[dict], config: dict, wall_s: float) -> dict:
    """Accuracy with a 95% bootstrap interval, accuracy of every selection rule, usage totals."""
    n = len(records)
    correct = [float(r["correct"]) for r in records]
    usage_keys = ("prompt_tokens", "generated_tokens", "prm_tokens", "samples")
    usage = {k: sum(r["usage"][k] for r in records) for k in usage_keys}
    selections = sorted({how for r in records for how in r.get("choices", {})})
    return {
        "strategy": config.get("strategy"),
        "task": config.get("task"),
        "split": config.get("split"),
        "policy": config.get("policy"),
        "prm": config.get("prm"),
        "n_problems": n,
        "accuracy": round(sum(correct) / n, 4) if n else None,
        "ci95": bootstrap_ci(correct) if n else None,
        "by_selection": {
            how: round(sum(r["choices"][how]["correct"] for r in records) / n, 4) for how in selections
        },
        "usage": usage,
        "tokens_per_problem": round(usage["generated_tokens"] / n, 1) if n else None,
        "wall_s_this_run": round(wall_s, 2),
        "config": config,
    }

