"""Where the batched work of a long stage runs: in this process, or on Ray actors.

Rollouts (`ias rollout`) and the evaluation pool (`ias eval`) both split their problems
into fixed shards (their chunks) and apply one *work* function to each shard, which needs
the run's parts (task, policy, PRM). An executor runs that work and hands the shards'
records back **in shard order**, so the caller appends them to its resumable store exactly
as a local run would: the same bytes, whatever executor and number of workers.

- `LocalExecutor` holds live parts and runs each shard in turn.
- `RayExecutor` (`ias.ray_executor`, the `ray` extra) gets a `Recipe` instead of live
  objects, and each of its actors builds its own replica of the parts from it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol, Sequence

from ias.errors import UserError
from ias.policy.base import Policy, SamplingParams
from ias.prm.base import PRM
from ias.tasks.base import Task
from ias.types import Problem

EXECUTORS = ("local", "ray")


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
    """How a worker builds its own parts: names and options, never live models.

    `cwd` is the driver's folder: relative paths (a local model, a calibrator, a data file)
    mean the same on a worker of the same machine or of a shared filesystem.
    """

    task: str
    policy: str
    task_options: dict = field(default_factory=dict)
    backend: str = "hf"
    backend_options: dict = field(default_factory=dict)
    prm: str | None = None
    prm_format: str | None = None
    prm_options: dict = field(default_factory=dict)
    calibrator: str | None = None
    cwd: str = field(default_factory=os.getcwd)

    def build(self, device: str | None = None) -> Parts:
        """Load the task, policy and (calibrated) PRM; `device` places transformers models."""
        from ias.calibration.calibrate import calibrated_prm
        from ias.policy.base import load_policy
        from ias.prm.base import load_prm
        from ias.tasks.base import get_task

        backend_options = dict(self.backend_options)
        if device and self.backend == "hf":
            backend_options.setdefault("device", device)
        task = get_task(self.task, **self.task_options)
        policy = load_policy(self.policy, backend=self.backend, **backend_options)
        prm = None
        if self.prm is not None:
            prm_options = {**({"device": device} if device else {}), **self.prm_options}
            prm = load_prm(self.prm, prm_format=self.prm_format, **prm_options)
            if self.calibrator is not None:
                prm = calibrated_prm(prm, self.calibrator)
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


def check_executor(kind: str, workers: int = 1, address: str | None = None,
                   num_cpus: float = 1.0, num_gpus: float = 0.0) -> None:
    """A user's executor settings, checked before anything is loaded."""
    if kind not in EXECUTORS:
        raise UserError(f"unknown executor '{kind}'; known: {', '.join(EXECUTORS)}")
    if not isinstance(workers, int) or workers < 1:
        raise UserError(f"--workers must be a whole number >= 1, got {workers!r}")
    if kind == "local" and (workers != 1 or address is not None):
        raise UserError("--workers and --ray-address need --executor ray")
    if num_cpus < 0 or num_gpus < 0:
        raise UserError(f"--ray-num-cpus and --ray-num-gpus must be >= 0, got {num_cpus} and {num_gpus}")


def open_executor(recipe: Recipe, workers: int = 1, address: str | None = None,
                  num_cpus: float = 1.0, num_gpus: float = 0.0) -> Executor:
    """A Ray executor of `workers` actors built from `recipe`; without Ray, which extra to install."""
    try:
        import ray  # noqa: F401
    except ImportError:
        from ias.errors import MissingExtraError

        raise MissingExtraError("--executor ray", "ray") from None
    from ias.ray_executor import RayExecutor

    return RayExecutor(recipe, workers=workers, address=address, num_cpus=num_cpus, num_gpus=num_gpus)
