"""The one loop of a long, resumable stage: claim the folder, resume, map the chunks on an
executor, append their records in order, summarise.

Best-of-N runs (`runner.run_dataset`: `ias solve`, `ias eval`'s pools and live searches) and
Monte-Carlo rollouts (`calibration/rollout.py`) are this loop over different stores. A
*store* owns its folder's files and so its crash rules: what a resumed run keeps, which
chunks it still computes, how a chunk is written, what the summary says. The loop owns
the order: `config.json` is claimed before anything is read, chunks are written in plan
order whichever executor ran them, and `summary.json` is written atomically at the end.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

from tqdm import tqdm

from ias.executors import Executor, Work
from ias.records import claim_folder, write_json
from ias.types import Problem

CONFIG = "config.json"
SUMMARY = "summary.json"


class ChunkWriter(Protocol):
    """Appends one chunk's records, durably, before the next chunk is written."""

    def write(self, records: list[dict]) -> None: ...


class Meter:
    """What a stage's progress bar counts, and its total: problems (a known total) here;
    a subclass counts other units and re-estimates the total as chunks finish."""

    unit = "problem"

    def __init__(self) -> None:
        self.problems = self.done_problems = self.done = self.total = 0

    def units(self, records: Sequence[dict]) -> int:
        """The units of progress these records hold."""
        return len(records)

    def start(self, problems: int, done_problems: int, done: int) -> None:
        self.problems, self.done_problems, self.done = problems, done_problems, done
        self.total = self.estimate(first=True)

    def advance(self, records: Sequence[dict]) -> int:
        """Count a written chunk; returns its units."""
        units = self.units(records)
        self.done_problems += len(records)
        self.done += units
        self.total = self.estimate(first=False)
        return units

    def estimate(self, first: bool) -> int:
        """The bar's total: before any chunk of this run (`first`), then after each."""
        return self.problems


@dataclass
class Plan:
    """What a resumed stage still computes (chunks of problems, in order) and the progress
    units already in its store for the problems asked for."""

    chunks: list[list[Problem]]
    done: int


class Store(Protocol):
    """A stage's files in `folder` (besides `config.json` and `summary.json`, the loop's)."""

    @property
    def folder(self) -> Path: ...

    def resume(self, problems: Sequence[Problem], size: int, meter: Meter) -> Plan:
        """Undo what a crash left half-done and plan the chunks (at most `size` problems
        each) still to compute; `meter` counts the progress already stored."""
        ...

    def writer(self) -> AbstractContextManager[ChunkWriter]: ...

    def summary(self, problems: Sequence[Problem], config: dict, wall_s: float) -> dict:
        """`summary.json`; `wall_s` is this run's wall time."""
        ...


def run_stage(
    store: Store,
    problems: Sequence[Problem],
    work: Work,
    executor: Executor,
    config: dict,
    *,
    batch_problems: int,
    desc: str,
    progress: bool = True,
    meter: Meter | None = None,
) -> dict:
    """Compute every chunk of `problems` the store lacks with `work` on `executor`, append
    the records in chunk order, then write and return the summary. A folder holding a run
    with another `config` is refused before anything in it is read or changed."""
    claim_folder(store.folder / CONFIG, config)
    meter = meter or Meter()
    plan = store.resume(problems, batch_problems, meter)
    meter.start(len(problems), len(problems) - sum(len(chunk) for chunk in plan.chunks), plan.done)
    started = time.time()
    with (
        store.writer() as writer,
        tqdm(
            total=meter.total, initial=meter.done, desc=desc, unit=meter.unit, disable=not progress, dynamic_ncols=True
        ) as bar,
    ):
        for records in executor.map(plan.chunks, work):
            writer.write(records)  # in chunk order, whichever executor ran it
            bar.update(meter.advance(records))
            if bar.total != meter.total:
                bar.total = meter.total
                bar.refresh()
    summary = store.summary(problems, config, time.time() - started)
    write_json(store.folder / SUMMARY, summary)
    return summary
