"""Rollouts per second on Ray with 1 and 2 workers, and the Ray path's overhead at 1 worker.

The same Monte-Carlo rollouts (zoo policy, built-in task) are run in three setups, into
fresh folders: locally in this process (one torch thread, like a 1-CPU actor), then on a local
Ray cluster with 1 and with 2 actors of 1 CPU each. Each run's store is checked to be the
local run's bytes; each is timed `--repeat` times and the fastest counts (this machine is
shared). Prints one JSON line:

    python benchmarks/scale.py --problems 32 --n-traj 2 --n-mc 4 --batch-problems 4

`startup_s` (actors starting, loading their models, and one warm-up problem each) is
reported apart from `run_s` (the rollouts themselves); `ray_overhead_1_worker` compares
run times and `ray_ms_per_empty_shard` is the executor's own cost per shard. More workers
than the machine has cores measure nothing useful: `--cpus` sizes the cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

# As Ray does for a 1-CPU actor, and before torch starts OpenMP: torch.set_num_threads(1)
# alone left the local run ~1.4x slower here than the same code in an actor.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from ias.calibration.rollout import rollout  # noqa: E402
from ias.executors import LocalExecutor, Parts, Recipe  # noqa: E402
from ias.policy.base import load_policy  # noqa: E402
from ias.specs import PolicySpec, RolloutSettings, TaskSpec  # noqa: E402
from ias.tasks.base import get_task  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=32)
    parser.add_argument("--n-traj", type=int, default=2)
    parser.add_argument("--n-mc", type=int, default=4)
    parser.add_argument("--max-prefix", type=int, default=20)
    parser.add_argument("--batch-problems", type=int, default=4, help="problems per shard")
    parser.add_argument("--policy", default="arith-weak")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    parser.add_argument("--workers", default="1,2", help="worker counts to measure")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each; the fastest counts")
    args = parser.parse_args()

    import ray

    from ias.ray_executor import RayExecutor

    torch.set_num_threads(1)
    task = get_task("arith")
    settings = dict(
        settings=RolloutSettings(args.n_traj, args.n_mc, args.max_prefix),
        seed=0,
        limit=args.problems,
        batch_problems=args.batch_problems,
        progress=False,
    )
    scratch = Path(tempfile.mkdtemp(prefix="ias-scale-"))
    figures: dict = {
        "problems": args.problems,
        "n_traj": args.n_traj,
        "n_mc": args.n_mc,
        "batch_problems": args.batch_problems,
        "policy": args.policy,
        "cpus": args.cpus,
        "torch_threads_per_worker": 1,
    }
    try:
        started = time.time()
        executor = LocalExecutor(Parts(task, load_policy(args.policy)))
        _warm_up(task, args.policy, executor, scratch / "warm-local", 1, settings)
        startup = time.time() - started
        summary, local_s, reference = _timed(task, args.policy, executor, scratch / "local", settings, args.repeat)
        figures["n_rollouts"] = summary["n_rollouts"]
        figures["local"] = _figures(summary["n_rollouts"], startup, local_s, True)

        started = time.time()
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        figures["ray_init_s"] = round(time.time() - started, 2)
        for workers in (int(w) for w in args.workers.split(",")):
            started = time.time()
            with RayExecutor(Recipe(TaskSpec("arith"), PolicySpec(args.policy)), workers=workers) as ray_executor:
                _warm_up(task, args.policy, ray_executor, scratch / f"warm-{workers}", workers, settings)
                startup = time.time() - started
                summary, run_s, store = _timed(
                    task, args.policy, ray_executor, scratch / f"ray-{workers}", settings, args.repeat
                )
                if workers == 1:  # the executor's own cost: a shard that does nothing, round trip
                    shards = [[p] for p in task.problems("calib", args.problems)]
                    started = time.time()
                    assert len(list(ray_executor.map(shards, _NoWork()))) == len(shards)
                    figures["ray_ms_per_empty_shard"] = round(1000 * (time.time() - started) / len(shards), 2)
            figures[f"ray_{workers}"] = _figures(summary["n_rollouts"], startup, run_s, store == reference)
        if "ray_1" in figures:
            figures["ray_overhead_1_worker"] = round(figures["ray_1"]["run_s"] / figures["local"]["run_s"] - 1, 3)
        if "ray_1" in figures and "ray_2" in figures:
            figures["speedup_2_over_1"] = round(figures["ray_1"]["run_s"] / figures["ray_2"]["run_s"], 2)
    finally:
        ray.shutdown()
        shutil.rmtree(scratch, ignore_errors=True)
    figures["load_avg_1min"] = round(os.getloadavg()[0], 2)  # other jobs on this machine skew wall times
    print(json.dumps(figures))


class _NoWork:
    """A shard's job that does nothing: what remains is the executor's overhead."""

    def __call__(self, parts, problems) -> list[dict]:
        return [{"id": p.id} for p in problems]


def _timed(task, policy: str, executor, out: Path, settings: dict, repeat: int) -> tuple[dict, float, bytes]:
    """The fastest of `repeat` runs into fresh folders; its summary and store."""
    best = float("inf")
    for k in range(max(1, repeat)):
        folder = out / str(k)
        started = time.time()
        summary = rollout(task, "calib", policy, out=folder, executor=executor, params=executor.defaults, **settings)
        best = min(best, time.time() - started)
    return summary, best, (folder / "rollouts.jsonl").read_bytes()


def _warm_up(task, policy: str, executor, out: Path, workers: int, settings: dict) -> None:
    """One problem per worker first, so that no timed run pays for first calls (grader processes...)."""
    warm = {**settings, "limit": workers, "batch_problems": 1}
    rollout(task, "seed:1", policy, out=out, executor=executor, params=executor.defaults, **warm)


def _figures(n_rollouts: int, startup_s: float, run_s: float, same: bool) -> dict:
    return {
        "startup_s": round(startup_s, 2),
        "run_s": round(run_s, 2),
        "rollouts_per_s": round(n_rollouts / run_s, 1),
        "same_bytes_as_local": same,
    }


if __name__ == "__main__":
    main()
