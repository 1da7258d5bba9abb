"""The `quantile-head` calibrator: the PRM stays frozen; a small head on its hidden state at
each step tag (plus its own score) predicts quantiles of the policy's success probability.

Quantiles cannot cross by construction: the lowest is `logit(score) + base(x)` and every
next one adds a softplus gap. Before fitting (base zero, gaps ~0) every quantile equals
the PRM's own probability, so fitting only moves it where the rollouts say so. The loss
is the pinball loss averaged over levels (SPEC §3).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ias.calibration.store import TargetRow
from ias.errors import UserError

LEVELS = (0.1, 0.5, 0.9)
HEAD_FILE = "quantile_head.safetensors"
EPS = 1e-6


def pinball(q: torch.Tensor, p: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """mean over rows and levels of beta*max(0, p-q) + (1-beta)*max(0, q-p); q is [N, M]."""
    diff = p[:, None] - q
    return torch.maximum(levels * diff, (levels - 1) * diff).mean()


class QuantileHead(nn.Module):
    """Monotone quantiles of success from (PRM score, hidden state at the tag)."""

    def __init__(self, width: int, levels: Sequence[float] = LEVELS):
        super().__init__()
        if list(levels) != sorted(levels) or not all(0 < b < 1 for b in levels) or len(set(levels)) != len(levels):
            raise UserError(f"quantile levels must be distinct, increasing and inside (0, 1), got {list(levels)}")
        self.levels = tuple(float(b) for b in levels)
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("scale", torch.ones(width))
        self.base = nn.Linear(width, 1)
        self.gaps = nn.Linear(width, len(levels) - 1)
        for layer in (self.base, self.gaps):
            nn.init.zeros_(layer.weight)
        nn.init.zeros_(self.base.bias)
        nn.init.constant_(self.gaps.bias, -10.0)  # softplus(-10) ~ 5e-5: quantiles start together

    def forward(self, score: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        x = (hidden - self.mean) / self.scale
        start = torch.logit(score.clamp(EPS, 1 - EPS)) + self.base(x)[:, 0]
        steps = nn.functional.softplus(self.gaps(x))
        z = torch.cat([start[:, None], start[:, None] + steps.cumsum(dim=1)], dim=1)
        return torch.sigmoid(z)

    def predict(self, score: np.ndarray, hidden: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self(torch.as_tensor(score, dtype=torch.float32), torch.as_tensor(hidden, dtype=torch.float32)).numpy()

    def save(self, folder: str | Path) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(folder / HEAD_FILE))
        (folder / "quantile_head.json").write_text(json.dumps({"levels": self.levels, "width": self.base.in_features}) + "\n")

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


def prm_readings(prm, rows: Sequence[TargetRow]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The PRM's score and hidden state for the rows it can read, and those rows' indices.

    One PRM input per trajectory (a causal PRM's reading at tag t sees only the first t
    steps) and one per question for t = 0: the same inputs inference builds. Rows of an
    input the PRM skips (longer than it allows) are left out; callers report how many.
    """
    longest: dict[tuple[str, int], list[str]] = {}
    questions: dict[str, str] = {}
    for row in rows:
        key = (row.problem_id, row.traj)
        if len(row.steps) >= len(longest.get(key, [])):
            longest[key] = list(row.steps)
        questions[row.problem_id] = row.question
    traj_keys = [k for k, steps in longest.items() if steps]
    items = [(questions[pid], longest[(pid, j)]) for pid, j in traj_keys] + [(q, []) for q in questions.values()]
    readings = prm.score(items, hidden=True)
    by_traj = dict(zip(traj_keys, readings[: len(traj_keys)]))
    by_question = dict(zip(questions, readings[len(traj_keys) :]))
    scores, states, kept = [], [], []
    for k, row in enumerate(rows):
        reading = by_question[row.problem_id] if row.t == 0 else by_traj[(row.problem_id, row.traj)]
        if reading.skipped:
            continue
        i = 0 if row.t == 0 else row.t - 1
        scores.append(reading.scores[i])
        states.append(reading.hidden[i])
        kept.append(k)
    if not kept:
        raise UserError("the PRM could read none of the rollouts' prefixes")
    return np.asarray(scores, dtype=np.float32), np.stack(states).astype(np.float32), kept


def split_by_problem(rows: Sequence[TargetRow], held_out: float, seed: int) -> tuple[list[int], list[int]]:
    """Row indices of a fit part and a held-out part, split by problem, never by prefix."""
    problems = sorted({r.problem_id for r in rows})
    rng = np.random.default_rng(seed)
    chosen = set(rng.choice(problems, size=max(1, round(held_out * len(problems))), replace=False)) if held_out else set()
    groups: dict[bool, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        groups[r.problem_id in chosen].append(i)
    return groups[False], groups[True]
