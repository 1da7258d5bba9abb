"""The figures `ias zoo info` reports: how widely a policy's success spreads, how well the PRM verifies."""

from __future__ import annotations

from ias.calibration.montecarlo import sample_trajectories
from ias.metrics import auroc, histogram
from ias.policy.base import Policy
from ias.prm.base import PRM
from ias.scaling.select import aggregate, select
from ias.tasks.base import Task
from ias.types import Problem


def success_spread(policy: Policy, task: Task, problems: list[Problem], n: int, seed: int) -> dict:
    """Per-problem success rate over `n` samples, as a 10-bin histogram plus the three bands."""
    groups = sample_trajectories(policy, task, problems, n, policy.defaults, seed)
    rates = [sum(t.correct for t in g) / n for g in groups]
    return {
        "problems": len(problems),
        "samples_per_problem": n,
        "mean_success": round(sum(rates) / len(rates), 4),
        "share_below_0.2": round(sum(r < 0.2 for r in rates) / len(rates), 4),
        "share_0.2_to_0.8": round(sum(0.2 <= r <= 0.8 for r in rates) / len(rates), 4),
        "share_above_0.8": round(sum(r > 0.8 for r in rates) / len(rates), 4),
        "success_hist": histogram(rates),
    }


def prm_verification(prm: PRM, policy: Policy, task: Task, problems: list[Problem], n: int, seed: int) -> dict:
    """On the policy's own samples: AUROC of the final-step score, Best-of-n vs majority at n."""
    groups = sample_trajectories(policy, task, problems, n, policy.defaults, seed)
    flat = [t for g in groups for t in g]
    scored = prm.score([(t.problem.question, t.steps) for t in flat])
    finals = [aggregate(s.scores, "last") for s in scored]
    bon = majority = 0
    for k, group in enumerate(groups):
        answers = [task.extract(t.text) for t in group]
        scores = finals[k * n : (k + 1) * n]
        best, voted = select(answers, scores, "best"), select(answers, scores, "majority")
        if best is None or voted is None:  # no samples: nothing chosen, nothing right
            continue
        bon += group[best].correct
        majority += group[voted].correct
    return {
        "policy": getattr(policy, "name", "?"),
        "problems": len(problems),
        "samples_per_problem": n,
        "final_step_auroc": round(auroc(finals, [t.correct for t in flat]), 4),
        f"bon@{n}_accuracy": round(bon / len(groups), 4),
        f"majority@{n}_accuracy": round(majority / len(groups), 4),
        "sample_accuracy": round(sum(t.correct for t in flat) / len(flat), 4),
    }
