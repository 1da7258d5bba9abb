"""The `quantile-head` calibrator: the PRM stays frozen; a small head on its hidden state at
each step tag (plus its own score) predicts quantiles of the policy's success probability.

Level m reads `logit(score) + w_m . x + b_m`; the logits are sorted before the sigmoid, so
quantiles cannot cross (SPEC §3: "parameterise or sort"). Before fitting (w, b zero) every
quantile equals the PRM's own probability exactly, so fitting only moves it where the
rollouts say so; the pinball loss pushes low levels down and high levels up from there.
(An earlier form added softplus gaps started at softplus(-10): their gradient, ~5e-5,
kept the levels glued together.) The loss is the pinball loss averaged over levels.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

from ias.calibration.calibrator import (
    LEVELS,
    Calibrator,
    MapCalibrator,
    Prefixes,
    check_levels,
    require_hidden,
)
from ias.calibration.store import TargetRow
from ias.errors import UserError
from ias.prm.base import PRM, ReadablePRM

HEAD_FILE = "quantile_head.safetensors"
EPS = 1e-6


def pinball(q: torch.Tensor, p: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """mean over rows and levels of beta*max(0, p-q) + (1-beta)*max(0, q-p); q is [N, M]."""
    diff = p[:, None] - q
    return torch.maximum(levels * diff, (levels - 1) * diff).mean()


class QuantileHead(nn.Module):
    """Monotone quantiles of success from (PRM score, hidden state at the tag)."""

    mean: torch.Tensor  # buffers: the hidden state's standardisation, fitted once
    scale: torch.Tensor

    def __init__(self, width: int, levels: Sequence[float] = LEVELS):
        super().__init__()
        self.levels = check_levels(levels)
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("scale", torch.ones(width))
        self.shift = nn.Linear(width, len(self.levels))
        nn.init.zeros_(self.shift.weight)
        nn.init.zeros_(self.shift.bias)

    def forward(self, score: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        x = (hidden - self.mean) / self.scale
        z = torch.logit(score.clamp(EPS, 1 - EPS))[:, None] + self.shift(x)
        return torch.sigmoid(z.sort(dim=1).values)

    def predict(self, score: np.ndarray, hidden: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self(
                torch.as_tensor(score, dtype=torch.float32), torch.as_tensor(hidden, dtype=torch.float32)
            ).numpy()

    def save(self, folder: str | Path) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(folder / HEAD_FILE))
        (folder / "quantile_head.json").write_text(
            json.dumps({"levels": self.levels, "width": self.shift.in_features}) + "\n"
        )

    @classmethod
    def load(cls, folder: str | Path) -> QuantileHead:
        from safetensors.torch import load_file

        folder = Path(folder)
        if not (folder / HEAD_FILE).exists():
            raise UserError(f"{folder} holds no quantile head ({HEAD_FILE})")
        meta = json.loads((folder / "quantile_head.json").read_text())
        head = cls(meta["width"], meta["levels"])
        head.load_state_dict(load_file(str(folder / HEAD_FILE)))
        return head.eval()


def fit_quantile_head(
    score: np.ndarray,
    hidden: np.ndarray,
    target: np.ndarray,
    levels: Sequence[float] = LEVELS,
    epochs: int = 400,
    lr: float = 0.02,
    weight_decay: float = 1e-3,
    seed: int = 0,
) -> QuantileHead:
    """Full-batch Adam on the pinball loss; seconds on a CPU for tens of thousands of prefixes."""
    if not len(score):
        raise UserError("no calibration targets to fit on")
    torch.manual_seed(seed)
    s = torch.as_tensor(score, dtype=torch.float32)
    h = torch.as_tensor(hidden, dtype=torch.float32)
    p = torch.as_tensor(target, dtype=torch.float32)
    head = QuantileHead(h.shape[1], levels)
    head.mean.copy_(h.mean(0))
    head.scale.copy_(h.std(0).clamp(min=1e-4))
    betas = torch.tensor(head.levels)
    optimizer = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        loss = pinball(head(s, h), p, betas)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return head.eval()


class QuantileHeadCalibrator(MapCalibrator):
    """`quantile-head` as a calibrator: the frozen PRM's reading mapped by a fitted head."""

    needs_hidden = True

    def __init__(self, method: str, head: QuantileHead):
        super().__init__(method, head.levels)
        self.head = head

    @classmethod
    def fit(
        cls,
        method: str,
        prm: ReadablePRM,
        data: Prefixes,
        levels: tuple[float, ...],
        seed: int,
        settings: dict[str, Any],
    ) -> Calibrator:
        hidden = require_hidden(data.hidden, method)
        return cls(method, fit_quantile_head(data.score, hidden, data.target, levels, seed=seed))

    def map(self, score: np.ndarray, hidden: np.ndarray | None) -> np.ndarray:
        return self.head.predict(score, require_hidden(hidden, self.method))

    def save(self, folder: Path) -> dict[str, Any]:
        self.head.save(folder)
        return {}

    @classmethod
    def load(cls, folder: Path, info: dict[str, Any], prm: PRM | None) -> Calibrator:
        return cls(info["method"], QuantileHead.load(folder))


def reading_plan(
    rows: Sequence[TargetRow], prm: ReadablePRM | None = None
) -> tuple[list[tuple[str, list[str]]], list[tuple[int, int]]]:
    """The PRM inputs that read every row, and for each row (input index, tag index).

    One input per trajectory (its longest prefix: a causal PRM's reading at tag t sees only
    the first t steps) and one per question for t = 0: the same inputs inference builds. A
    trajectory longer than `prm` reads is read prefix by prefix instead, so its rows that fit
    are kept (dropping them all would drop long, mostly failed trajectories: biased targets).
    """
    longest: dict[tuple[str, int], list[str]] = {}
    questions: dict[str, str] = {}
    for row in rows:
        key = (row.problem_id, row.traj)
        if len(row.steps) >= len(longest.get(key, [])):
            longest[key] = list(row.steps)
        questions[row.problem_id] = row.question
    fits = _fits(prm)
    traj_keys = [k for k, steps in longest.items() if steps and fits(questions[k[0]], steps)]
    items = [(questions[pid], longest[(pid, j)]) for pid, j in traj_keys] + [(q, []) for q in questions.values()]
    traj_index = {key: i for i, key in enumerate(traj_keys)}
    question_index = {pid: len(traj_keys) + i for i, pid in enumerate(questions)}
    where = []
    for row in rows:
        key = (row.problem_id, row.traj)
        if row.t == 0:
            where.append((question_index[row.problem_id], 0))
        elif key in traj_index:
            where.append((traj_index[key], row.t - 1))
        else:  # its trajectory is too long as a whole: this prefix alone (a skip if it is too)
            where.append((len(items), row.t - 1))
            items.append((row.question, list(row.steps)))
    return items, where


def _fits(prm: ReadablePRM | None) -> Callable[[str, list[str]], bool]:
    """Whether the PRM reads an input whole (always, when no PRM is given)."""
    if prm is None:
        return lambda question, steps: True

    def fits(question: str, steps: list[str]) -> bool:
        try:
            return len(prm.encode(question, steps)[0]) <= prm.max_length
        except ValueError:  # unreadable (a step holds the tag): each prefix will say why
            return False

    return fits


def prm_readings(prm: ReadablePRM, rows: Sequence[TargetRow], hidden: bool = True) -> Readings:
    """The PRM's reading of every row it can read (score, hidden state, quantiles if calibrated).

    Rows of an input the PRM skips (longer than it allows) are left out; callers report how many.
    """
    items, where = reading_plan(rows, prm)
    readings = prm.score(items, hidden=hidden)
    kept = [k for k, (i, _) in enumerate(where) if not readings[i].skipped]
    if not kept:
        raise UserError("the PRM could read none of the rollouts' prefixes")
    at = [where[k] for k in kept]
    score = np.asarray([readings[i].scores[j] for i, j in at], dtype=np.float32)
    states = np.stack([readings[i].hidden[j] for i, j in at]).astype(np.float32) if hidden else None
    read = [(readings[i].quantiles, j) for i, j in at]
    quantiles = None
    if all(q is not None for q, _ in read):
        quantiles = np.asarray([q[j] for q, j in read if q is not None], dtype=np.float32)
    return Readings(score, states, quantiles, kept)


def read_prefixes(prm: ReadablePRM, rows: Sequence[TargetRow], hidden: bool) -> Prefixes:
    """The rows the PRM can read, with its readings (hidden states only when asked)."""
    readings = prm_readings(prm, rows, hidden=hidden)
    return Prefixes([rows[k] for k in readings.kept], readings.score, readings.hidden)


class Readings(NamedTuple):
    """Per readable row: the PRM's score, its hidden state at the tag, its quantiles if it has them."""

    score: np.ndarray
    hidden: np.ndarray | None
    quantiles: np.ndarray | None
    kept: list[int]


def split_by_problem(rows: Sequence[TargetRow], held_out: float, seed: int) -> tuple[list[int], list[int]]:
    """Row indices of a fit part and a held-out part, split by problem, never by prefix."""
    problems = sorted({r.problem_id for r in rows})
    rng = np.random.default_rng(seed)
    chosen = (
        set(rng.choice(problems, size=max(1, round(held_out * len(problems))), replace=False)) if held_out else set()
    )
    groups: dict[bool, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        groups[r.problem_id in chosen].append(i)
    return groups[False], groups[True]
