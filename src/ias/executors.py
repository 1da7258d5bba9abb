"""Where the batched work of a long stage runs: in this process, or on Ray actors.

Rollouts (`ias rollout`) and the evaluation pool (`ias eval`) both split their problems
into fixed shards (their chunks) and apply one *work* function to each shard, which needs
the run's parts (task, policy, PRM). An executor runs that work and hands the shards'
records back **in shard order**, so the caller appends them to its resumable store exactly
as a local run would: the same bytes, whatever executor and number of workers.

- `LocalExecutor` holds live parts and runs each shard in turn.
- `RayExecutor` (`ias.ray_executor`, the `ray` extra) gets a `Recipe` (the run's task,
  policy and PRM specs) instead of live objects, and each of its actors builds its own replica of the parts from it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol, Sequence

from ias.policy.base import Policy, SamplingParams
from ias.prm.base import PRM
from ias.specs import ExecutorSpec, PolicySpec, PRMSpec, TaskSpec
from ias.tasks.base import Task
from ias.types import Problem


@dataclass
class Parts:
    """The live objects a shard's work needs."""

    task: Task
    policy: Policy
    prm: PRM | None = None


class Work(Protocol):
    """One shard's job: picklable (it travels to actors), pure in (parts, problems)."""

    def __call__(self, parts: Parts, problems: Sequence[Problem]) -> list[dict]: ...


@dataclass(frozen=True)
class Recipe:
    """How a worker builds its own parts: the run's specs, never live models.

    `cwd` is the driver's folder: relative paths (a local model, a calibrator, a data file)
    mean the same on a worker of the same machine or of a shared filesystem.
    """

    task: TaskSpec
    policy: PolicySpec
    prm: PRMSpec | None = None
    cwd: str = field(default_factory=os.getcwd)

    def build(self, device: str | None = None) -> Parts:
        """Load the task, policy and (calibrated) PRM; `device` places transformers models."""
        from ias.calibration.calibrate import calibrated_prm
        from ias.policy.base import load_policy
        from ias.prm.base import load_prm
        from ias.tasks.base import get_task

        backend_options = dict(self.policy.options)
        if device and self.policy.backend == "hf":
            backend_options.setdefault("device", device)
        task = get_task(self.task.name, **self.task.options)
        policy = load_policy(self.policy.model, backend=self.policy.backend, **backend_options)
        prm = None
        if self.prm is not None and self.prm.model is not None:
            prm_options = {**({"device": device} if device else {}), **self.prm.options}
            prm = load_prm(self.prm.model, prm_format=self.prm.format, **prm_options)
            if self.prm.calibrator is not None:
                prm = calibrated_prm(prm, self.prm.calibrator)
        return Parts(task, policy, prm)


class Executor(Protocol):
    """Runs `work` over shards and yields each shard's records in shard order."""

    @property
    def defaults(self) -> SamplingParams:
        """The policy's own sampling settings (read where the policy lives)."""
        ...

    def map(self, shards: Sequence[Sequence[Problem]], work: Work) -> Iterator[list[dict]]: ...

    def __enter__(self) -> Executor: ...

    def __exit__(self, *exc: Any) -> None: ...


class LocalExecutor:
    """The shards one after another, in this process, on parts already loaded."""

    def __init__(self, parts: Parts):
        self.parts = parts

    @property
    def defaults(self) -> SamplingParams:
        return self.parts.policy.defaults

    def map(self, shards: Sequence[Sequence[Problem]], work: Work) -> Iterator[list[dict]]:
        for shard in shards:
            yield work(self.parts, shard)

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def open_executor(recipe: Recipe, spec: ExecutorSpec) -> Executor:
    """A Ray executor of `spec.workers` actors built from `recipe`; without Ray, which extra to install."""
    try:
        import ray  # noqa: F401
    except ImportError:
        from ias.errors import MissingExtraError

        raise MissingExtraError("--executor ray", "ray") from None
    from ias.ray_executor import RayExecutor

    return RayExecutor(
        recipe, workers=spec.workers, address=spec.address, num_cpus=spec.num_cpus, num_gpus=spec.num_gpus
    )
