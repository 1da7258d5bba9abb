"""One thread owns the policy; concurrent requests' work is interleaved fairly and batched.

A request is split into units, one per prompt (all its `n` samples: sample j of a seed is
the policy's sample j of that seed, so splitting never changes a sample). Each step takes
units round-robin over the waiting requests until the step holds `step_samples` samples,
then sends one policy call per distinct (n, settings), smallest n first. So a request of 64
prompts x n=1024 cannot starve a one-prompt request: that one waits at most one step.
A cancelled request (its client left, or its time ran out) loses its remaining units.
The number of requests waiting or running is bounded: past it, `submit` raises `QueueFull`.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Callable

from ias.policy.base import Policy, SamplingParams
from ias.types import Sample


class QueueFull(Exception):
    """More requests are waiting than the server takes (answered 429 with Retry-After)."""


@dataclass(eq=False)
class Job:
    """One request's sampling work; `future` gets its samples, one list per prompt."""

    prompts: list[str]
    n: int
    params: SamplingParams
    seed: int
    on_unit: Callable[[int, list[Sample]], None] | None = None  # each prompt's samples as they come (streaming)
    future: Future = field(default_factory=Future)
    results: list[list[Sample] | None] = field(init=False)
    scheduled: int = 0  # prompts handed to a step so far
    finished: int = 0  # prompts whose samples came back
    cancelled: bool = False
    ended: bool = False  # counted out of the queue (once)

    def __post_init__(self) -> None:
        self.results = [None] * len(self.prompts)

    def cancel(self) -> None:
        """Drop the units not yet sampled (a step already running still finishes)."""
        self.cancelled = True
        self.future.cancel()

    def all_results(self) -> list[list[Sample]]:
        """Every prompt's samples, once all have come back."""
        done = [samples for samples in self.results if samples is not None]
        if len(done) < len(self.results):
            raise RuntimeError(f"{len(self.results) - len(done)} of the job's prompts have no samples yet")
        return done


class WorkerThread:
    """A server's one thread over its models, with its bounded admission: requests submitted
    and not yet answered are counted (`depth`); past `max_pending`, or once closing,
    `_admit` raises `QueueFull`. Subclasses run `_loop` and count an answered request out."""

    def __init__(self, name: str, max_pending: int):
        self.max_pending = max_pending
        self._cond = threading.Condition()
        self._pending = 0
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    @property
    def depth(self) -> int:
        """Requests submitted and not yet answered (waiting or running)."""
        return self._pending

    def _admit(self, queue: deque, item) -> None:
        """Queue a new request for the thread, or refuse it (full, or shutting down)."""
        with self._cond:
            if self._closed:
                raise QueueFull("the server is shutting down")
            if self._pending >= self.max_pending:
                raise QueueFull(f"{self._pending} requests are already waiting (--max-queue {self.max_pending})")
            self._pending += 1
            queue.append(item)
            self._cond.notify()

    def _join(self, timeout: float) -> None:
        """Wait for the thread's step in progress (not from the thread itself)."""
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _loop(self) -> None:
        raise NotImplementedError


class Scheduler(WorkerThread):
    """The policy's only caller: a worker thread running steps of fairly chosen units."""

    def __init__(self, policy: Policy, max_pending: int = 256, step_samples: int = 256):
        super().__init__("ias-serve-scheduler", max_pending)
        self.policy = policy
        self.step_samples = step_samples
        self._waiting: deque[Job] = deque()  # jobs with units left, in round-robin order
        self._thread.start()

    def submit(
        self,
        prompts: list[str],
        n: int,
        params: SamplingParams,
        seed: int,
        on_unit: Callable[[int, list[Sample]], None] | None = None,
    ) -> Job:
        job = Job(prompts, n, params, seed, on_unit)
        self._admit(self._waiting, job)
        return job

    def close(self, timeout: float = 300.0) -> None:
        """Stop after the step in progress (waiting for it: torch must not be mid-call when
        the process exits); requests still waiting are cancelled."""
        with self._cond:
            self._closed = True
            for job in self._waiting:
                job.cancel()
                self._end(job)
            self._waiting.clear()
            self._cond.notify()
        self._join(timeout)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                units = self._take()
            self._run(units)

    def _take(self) -> list[tuple[Job, int]]:
        """One step's units: each waiting job's next prompt in turn, until the step is full."""
        units: list[tuple[Job, int]] = []
        cost = 0
        while self._waiting and (not units or cost + self._waiting[0].n <= self.step_samples):
            job = self._waiting.popleft()
            if job.cancelled:
                self._end(job)
                continue
            units.append((job, job.scheduled))
            job.scheduled += 1
            cost += job.n
            if job.scheduled < len(job.prompts):
                self._waiting.append(job)
        return units

    def _run(self, units: list[tuple[Job, int]]) -> None:
        groups: dict[tuple[int, SamplingParams], list[tuple[Job, int]]] = {}
        for job, i in units:
            groups.setdefault((job.n, job.params), []).append((job, i))
        for (n, params), group in sorted(groups.items(), key=lambda item: item[0][0]):
            self._call(group, n, params)

    def _call(self, group: list[tuple[Job, int]], n: int, params: SamplingParams) -> None:
        try:
            out = self.policy.sample([job.prompts[i] for job, i in group], n, params, [job.seed for job, _ in group])
        except Exception as err:  # noqa: BLE001  (reported to its request; the server stays up)
            jobs = list(dict.fromkeys(job for job, _ in group))
            if len(jobs) > 1:  # one bad request must not fail the others: each on its own
                for job in jobs:
                    self._call([(j, i) for j, i in group if j is job], n, params)
                return
            self._fail(jobs[0], err)
            return
        for (job, i), samples in zip(group, out):
            job.results[i] = samples
            job.finished += 1
            if job.on_unit is not None and not job.cancelled:
                job.on_unit(i, samples)
            if job.finished == len(job.prompts):
                self._settle(job, lambda f, job=job: f.set_result(job.results))

    def _fail(self, job: Job, err: BaseException) -> None:
        job.cancelled = True  # its other units are not worth sampling
        self._settle(job, lambda f: f.set_exception(err))

    def _settle(self, job: Job, outcome) -> None:
        try:
            outcome(job.future)
        except InvalidStateError:  # cancelled meanwhile: nobody waits for it
            pass
        with self._cond:
            self._end(job)

    def _end(self, job: Job) -> None:
        if not job.ended:
            job.ended = True
            self._pending -= 1
