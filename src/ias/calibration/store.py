"""The Monte-Carlo rollout store (SPEC §2): one JSONL record per problem, resumable by chunk.

A rollout folder holds `config.json` (what was asked), `rollouts.jsonl` and
`summary.json`. Each line of `rollouts.jsonl` is one problem:

    {"id", "question", "answer", "meta",
     "trajectories": [{"index", "text", "steps", "correct", "usage", "mc_usage",
                       "targets": [{"t", "correct", "n", "p", "outcomes"}, ...]}, ...],
     "usage"}

`targets` holds t = 0 .. min(T, max_prefix+1)-1 (each continued `n` times; `outcomes`
lists every continuation's 0/1 grade, `p = correct / n`) and then t = T, the trajectory's
own correctness (`n = 1`, `"final": true`). `usage` is the trajectory's own sampling cost,
`mc_usage` the cost of its continuations.

Problems are processed in fixed chunks and a chunk's records are appended in one synced
write. A crash can leave the store ending inside a chunk (a torn line, or whole lines of
an unfinished write); `resume_plan` finds those trailing records and they are cut off, so
the chunk is computed again whole and the file ends up byte for byte what an
uninterrupted run writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from ias.errors import UserError
from ias.records import RecordWriter, read_records

ROLLOUTS = "rollouts.jsonl"
CONFIG = "config.json"
SUMMARY = "summary.json"


@dataclass(frozen=True)
class TargetRow:
    """One calibration pair: the prefix `steps` (t of them) of trajectory `traj`, and its target.

    `correct` of `n` continuations were right, `p = correct / n`; `final` marks the t = T row,
    whose target is the whole trajectory's 0/1 correctness.
    """

    problem_id: str
    traj: int
    t: int
    steps: list[str]
    question: str
    correct: int
    n: int
    p: float
    final: bool = False


class RolloutStore:
    """The `rollouts.jsonl` of a rollout folder: read, cut back to whole chunks, append."""

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.path = self.out / ROLLOUTS

    def records(self) -> list[dict]:
        """The complete records, in file order (a torn last line is ignored)."""
        return read_records(self.path, required=("id", "question", "trajectories"))

    def keep_first(self, n: int) -> None:
        """Cut the file after its first `n` complete records (and any torn line)."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1  # everything after the last newline is a torn line
        kept, offset = 0, 0
        while kept < n and offset < end:
            nl = data.index(b"\n", offset)
            if data[offset:nl].strip():
                kept += 1
            offset = nl + 1
        if kept < n:
            raise ValueError(f"{self.path} holds {kept} records, cannot keep {n}")
        if offset != len(data):
            with open(self.path, "r+b") as f:
                f.truncate(offset)
                f.flush()

    def writer(self) -> RecordWriter:
        return RecordWriter(self.path)


def chunks(ids: Sequence[str], size: int) -> list[list[str]]:
    """Chunk k is ids[k*size:(k+1)*size]: fixed by the problem order, whatever was done before."""
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    return [list(ids[k : k + size]) for k in range(0, len(ids), size)]


def resume_plan(plan: Sequence[Sequence[str]], stored: Sequence[str]) -> tuple[int, list[list[str]]]:
    """What to keep of a store and what to compute, given the planned chunks of problem ids.

    Returns `(keep, todo)`: keep the first `keep` stored records, then compute the `todo`
    id lists in order. Trailing records of a chunk that is not complete in the store are
    what a crash in the middle of that chunk's write leaves: they are dropped and the chunk
    is recomputed whole (same batch, same bytes). A chunk already complete is skipped.
    A chunk partly stored elsewhere than at the end (only possible after a change of
    `batch_problems`) gets just its missing problems computed, so nothing is duplicated.
    """
    chunk_of = {pid: k for k, chunk in enumerate(plan) for pid in chunk}
    keep = len(stored)
    while keep:
        k = chunk_of.get(stored[keep - 1])
        if k is None or set(plan[k]) <= set(stored[:keep]):
            break
        while keep and chunk_of.get(stored[keep - 1]) == k:
            keep -= 1
    done = set(stored[:keep])
    todo = []
    for chunk in plan:
        missing = [pid for pid in chunk if pid not in done]
        if missing:
            todo.append(missing)
    return keep, todo


def rollout_count(record: dict) -> int:
    """Policy samples a record cost: its trajectories plus every continuation."""
    return sum(1 + sum(tg["n"] for tg in tr["targets"] if not tg.get("final")) for tr in record["trajectories"])


def iter_targets(records: Sequence[dict]) -> Iterator[TargetRow]:
    for r in records:
        for tr in r["trajectories"]:
            steps = tr["steps"]
            for tg in tr["targets"]:
                t = tg["t"]
                yield TargetRow(
                    r["id"],
                    tr["index"],
                    t,
                    steps[:t],
                    r["question"],
                    tg["correct"],
                    tg["n"],
                    tg["p"],
                    final=bool(tg.get("final")),
                )


def read_config(out: str | Path) -> dict:
    """The `config.json` of a rollout folder: task, split, policy, sampling, n_traj, n_mc, seed..."""
    path = Path(out) / CONFIG
    if not path.exists():
        raise UserError(f"{Path(out)} holds no {CONFIG}; is it a rollout folder?")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"{path} is damaged ({type(err).__name__}); run `ias rollout` into a new folder") from None
    if not isinstance(config, dict):
        raise UserError(f"{path} is not a rollout folder's config; run `ias rollout` into a new folder")
    return config


def target_resolution(rows: Sequence[TargetRow]) -> float:
    """Half the finest step of the targets' grid (1 / (2 N_MC)): closer than this is a tie."""
    return 0.5 / max(r.n for r in rows)


def require_rollouts(out: str | Path) -> RolloutStore:
    """The rollout store of a folder, or a one-line error before any model is loaded."""
    store = RolloutStore(out)
    if not store.path.exists():
        raise UserError(f"{store.out} holds no {ROLLOUTS}; run `ias rollout --out {store.out}` first")
    return store


def load_targets(out: str | Path, include_final: bool = True) -> list[TargetRow]:
    """The store of a rollout folder as flat calibration rows, in file order.

    `include_final=False` leaves out the t = T rows (targets by correctness, not by
    continuation); SPEC §2 keeps them, so by default they are in.
    """
    store = require_rollouts(out)
    records = store.records()
    if not records:
        raise UserError(f"{store.path} holds no rollouts; run `ias rollout --out {store.out}`")
    try:
        rows = list(iter_targets(records))
    except (KeyError, TypeError, IndexError, AttributeError):
        raise UserError(f"{store.path} holds a record of another shape; run `ias rollout` into a new folder") from None
    return rows if include_final else [row for row in rows if not row.final]
