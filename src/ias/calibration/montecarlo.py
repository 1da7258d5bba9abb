"""Monte-Carlo success targets (SPEC §2): how often the policy, continuing a prefix, ends right.

Every prefix of every trajectory is continued `n_mc` times in one batched policy call;
every continuation counts (nothing is resampled or filtered), and the whole trajectory's
own correctness is the target at t = T.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ias.policy.base import Policy, SamplingParams, derive_seed
from ias.prompting import render_prompt
from ias.tasks.base import Task
from ias.types import STEP_DELIMITER, Problem, Usage, split_steps


@dataclass
class Trajectory:
    problem: Problem
    index: int
    text: str
    steps: list[str]
    correct: bool
    usage: Usage = field(default_factory=Usage)


@dataclass
class PrefixTarget:
    """The target for prefix t of a trajectory: `correct` of `n` continuations were right.

    `outcomes` holds each continuation's grade and `usage` what they cost; the t = T
    target (the trajectory itself) has `final` set and no continuations.
    """

    problem_id: str
    traj: int
    t: int
    steps: list[str]
    correct: int
    n: int
    outcomes: list[int] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    final: bool = False

    @property
    def p(self) -> float:
        return self.correct / self.n


def sample_trajectories(
    policy: Policy, task: Task, problems: Sequence[Problem], n: int, params: SamplingParams, seed: int
) -> list[list[Trajectory]]:
    """`n` full solutions per problem, graded, in one batched call."""
    prompts = [render_prompt(task, p, policy) for p in problems]
    samples = policy.sample(prompts, n, params, [derive_seed(seed, p.id, "traj") for p in problems])
    out = []
    for problem, group in zip(problems, samples):
        out.append(
            [
                Trajectory(
                    problem,
                    j,
                    s.text,
                    split_steps(s.text),
                    task.grade(problem, s.text),
                    s.usage,
                )
                for j, s in enumerate(group)
            ]
        )
    return out


def prefix_targets(
    policy: Policy,
    task: Task,
    trajectories: Sequence[Trajectory],
    n_mc: int,
    max_prefix: int,
    params: SamplingParams,
    seed: int,
) -> tuple[list[PrefixTarget], Usage]:
    """Targets for t = 0 .. min(T, max_prefix+1)-1 by continuation, and t = T by correctness."""
    jobs = [(tr, t) for tr in trajectories for t in range(min(len(tr.steps), max_prefix + 1))]
    prompts = [render_prompt(task, tr.problem, policy, tr.steps[:t]) for tr, t in jobs]
    seeds = [derive_seed(seed, tr.problem.id, "mc", tr.index, t) for tr, t in jobs]
    samples = policy.sample(prompts, n_mc, params, seeds) if jobs else []
    usage = Usage()
    targets = []
    for (tr, t), group in zip(jobs, samples):
        prefix = "".join(step + STEP_DELIMITER for step in tr.steps[:t])
        outcomes = [int(task.grade(tr.problem, prefix + s.text)) for s in group]
        spent = Usage()
        for s in group:
            spent = spent + s.usage
        usage = usage + spent
        targets.append(PrefixTarget(tr.problem.id, tr.index, t, tr.steps[:t], sum(outcomes), n_mc, outcomes, spent))
    for tr in trajectories:
        targets.append(PrefixTarget(tr.problem.id, tr.index, len(tr.steps), tr.steps, int(tr.correct), 1, final=True))
    return targets, usage
