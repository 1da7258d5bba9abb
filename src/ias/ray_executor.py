"""The Ray executor: shards of problems on Ray actors, each with its own policy and PRM replica.

Each actor declares its resources (`num_cpus`, `num_gpus`) and builds its parts from a
`Recipe` on first use, so models are loaded where they run, never shipped. The driver
keeps every actor busy with one shard, collects finished shards as they arrive
(`ray.wait`) and hands them back in shard order (a finished shard waits while an earlier
one runs; at most `2 x workers` shards are ahead of the next one to write).

Faults: a shard whose actor died (process killed, out of memory, node lost) is run again
on a fresh actor, at most `max_tries` times in all, then the run stops with a one-line
error; whatever was written stays, and rerunning the same command resumes. An error the
work itself raises (a bad option, a prompt too long) is not retried: it is raised as is.

Only this module imports `ray`, and only when a Ray executor is made.
"""

from __future__ import annotations

import heapq
import os
import socket
from collections import Counter
from typing import Any, Iterator, Sequence

import ray
from ray.exceptions import RayActorError, RayTaskError

from ias.errors import UserError
from ias.executors import Parts, Recipe, Work
from ias.policy.base import SamplingParams
from ias.types import Problem

# Testing aid (fault injection): a file holding "SHARD TIMES" makes the actor that starts
# shard SHARD exit abruptly, like a killed process, the next TIMES times.
FAULT_FILE_ENV = "IAS_FAULT_FILE"

try:  # Ray >= 2.20: a restarting actor that cannot answer now
    from ray.exceptions import ActorUnavailableError

    _ACTOR_GONE: tuple[type[BaseException], ...] = (RayActorError, ActorUnavailableError)
except ImportError:  # pragma: no cover
    _ACTOR_GONE = (RayActorError,)


class _Worker:
    """One actor: a replica of the run's parts, built on first use, running one shard at a time."""

    def __init__(self, recipe: Recipe, threads: int):
        import torch

        torch.set_num_threads(threads)
        if os.path.isdir(recipe.cwd):  # relative paths of the recipe mean what they meant to the driver
            os.chdir(recipe.cwd)
        self.recipe = recipe
        self.device = "cuda" if ray.get_gpu_ids() else None  # Ray has set CUDA_VISIBLE_DEVICES
        self.parts: Parts | None = None

    def _parts(self) -> Parts:
        if self.parts is None:
            self.parts = self.recipe.build(self.device)
        return self.parts

    def ready(self) -> SamplingParams:
        """Load the parts now; the policy's own sampling settings."""
        return self._parts().policy.defaults

    def run(self, index: int, problems: Sequence[Problem], work: Work) -> list[dict]:
        _fault_point(index)
        return work(self._parts(), problems)


_RemoteWorker = ray.remote(_Worker)


def _fault_point(index: int) -> None:
    path = os.environ.get(FAULT_FILE_ENV)
    if not path or not os.path.exists(path):
        return
    with open(path) as f:
        shard, times = (int(x) for x in f.read().split())
    if shard != index or times < 1:
        return
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{shard} {times - 1}\n")
    os.replace(tmp, path)
    os._exit(1)


class RayExecutor:
    """`workers` actors of `num_cpus` CPUs and `num_gpus` GPUs each, on the cluster at `address`.

    Used as a context manager: entering connects (or starts a local cluster when no
    `address` is given and none is running), starts the actors and waits until each has
    loaded its parts; leaving ends the actors (and a cluster it started). `retries` counts
    shards run again after their actor died.
    """

    def __init__(
        self,
        recipe: Recipe,
        workers: int = 1,
        address: str | None = None,
        num_cpus: float = 1.0,
        num_gpus: float = 0.0,
        max_tries: int = 3,
    ):
        if workers < 1 or max_tries < 1:
            raise UserError(f"need workers >= 1 and max_tries >= 1, got {workers} and {max_tries}")
        self.recipe, self.workers, self.address = recipe, workers, address
        self.num_cpus, self.num_gpus, self.max_tries = num_cpus, num_gpus, max_tries
        self.retries = 0
        self._actors: list[Any] = []
        self._started_ray = False
        self._defaults: SamplingParams | None = None

    @property
    def defaults(self) -> SamplingParams:
        if self._defaults is None:
            raise RuntimeError("enter the executor (`with`) before asking for the policy's defaults")
        return self._defaults

    def __enter__(self) -> RayExecutor:
        self._connect()
        try:
            self._check_resources()
            self._actors = [self._spawn() for _ in range(self.workers)]
            self._defaults = _get([actor.ready.remote() for actor in self._actors])[0]
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        for actor in self._actors:
            ray.kill(actor)
        self._actors = []
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False

    def map(self, shards: Sequence[Sequence[Problem]], work: Work) -> Iterator[list[dict]]:
        """Every shard's records, in shard order, as soon as it and every earlier one are done."""
        if not self._actors:
            raise RuntimeError("enter the executor (`with`) before mapping over it")
        window = 2 * len(self._actors)
        queue = list(range(len(shards)))  # a heap: the earliest shard goes first, retries included
        idle = list(self._actors)
        running: dict[Any, tuple[int, Any]] = {}
        done: dict[int, list[dict]] = {}
        tries: Counter[int] = Counter()
        next_out = 0
        while next_out < len(shards):
            while idle and queue and queue[0] < next_out + window:
                k = heapq.heappop(queue)
                actor = idle.pop()
                running[actor.run.remote(k, list(shards[k]), work)] = (k, actor)
            [ref], _ = ray.wait(list(running), num_returns=1)
            k, actor = running.pop(ref)
            try:
                done[k] = _get(ref)
                idle.append(actor)
            except _ACTOR_GONE as err:
                tries[k] += 1
                if tries[k] >= self.max_tries:
                    first = shards[k][0].id if shards[k] else "-"
                    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                    raise UserError(
                        f"shard {k} (problems from '{first}') lost its Ray actor {tries[k]} times ({reason}); "
                        "finished shards are saved: rerun the same command to resume"
                    ) from None
                self.retries += 1
                idle.append(self._replace(actor))
                heapq.heappush(queue, k)
            while next_out in done:
                yield done.pop(next_out)
                next_out += 1

    def _spawn(self) -> Any:
        actor_class = _RemoteWorker.options(
            num_cpus=self.num_cpus,
            num_gpus=self.num_gpus,
            max_restarts=0,
            max_task_retries=0,
        )
        return actor_class.remote(self.recipe, max(1, int(self.num_cpus)))

    def _replace(self, dead: Any) -> Any:
        ray.kill(dead)
        fresh = self._spawn()
        self._actors = [fresh if a is dead else a for a in self._actors]
        return fresh

    def _connect(self) -> None:
        if ray.is_initialized():
            return
        _check_reachable(self.address)
        try:
            if self.address is None:  # a local cluster (or the one RAY_ADDRESS names)
                ray.init(include_dashboard=False)
            else:
                ray.init(address=self.address)
        except ConnectionError as err:
            where = self.address or os.environ.get("RAY_ADDRESS", "local")
            raise UserError(
                f"cannot reach the Ray cluster at '{where}' ({err}); start one with `ray start --head` "
                "or fix --ray-address"
            ) from None
        self._started_ray = True

    def _check_resources(self) -> None:
        """Fail now, not hang: actors that cannot all be placed would wait forever."""
        total = ray.cluster_resources()
        for name, each in (("CPU", self.num_cpus), ("GPU", self.num_gpus)):
            have = total.get(name, 0.0)
            if each * self.workers > have + 1e-9:
                raise UserError(
                    f"{self.workers} Ray workers x {each:g} {name} need {each * self.workers:g} {name}s, "
                    f"the cluster has {have:g}; use fewer --workers or a smaller --ray-num-{name.lower()}s"
                )


def _check_reachable(address: str | None, timeout_s: float = 5.0) -> None:
    """A HOST:PORT that does not answer is an error now (Ray itself would retry for minutes)."""
    host, sep, port = (address or "").rpartition(":")
    if not address or not sep or "://" in address or not port.isdigit():
        return  # "auto", a ray:// client address, or none: Ray checks those quickly itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as err:
        raise UserError(
            f"cannot reach the Ray cluster at '{address}' ({err.strerror or err}); start one with "
            "`ray start --head` or fix --ray-address"
        ) from None


def _get(refs: Any) -> Any:
    """`ray.get`, raising an error the work raised as itself (a user's mistake stays one line)."""
    try:
        return ray.get(refs)
    except RayTaskError as err:
        cause = getattr(err, "cause", None)
        if isinstance(cause, UserError):
            raise cause from None
        raise
