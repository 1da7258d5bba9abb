"""The Ray executor on a real local cluster: same records as a local run, a killed actor's shard
retried elsewhere, a bounded number of tries, and the one-line error without the extra."""

import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

import ias.api as api
from ias.calibration.rollout import rollout
from ias.cli import main
from ias.errors import UserError
from ias.executors import Recipe
from ias.records import read_records
from ias.specs import PolicySpec, RolloutSettings, TaskSpec
from ias.tasks.base import get_task

ray = pytest.importorskip("ray")  # a guard only: the `test` extra installs ray

from ias.ray_executor import FAULT_FILE_ENV, RayExecutor, _check_reachable  # noqa: E402

ROLLOUT = dict(
    task="arith",
    split="calib",
    policy="arith-weak",
    n_traj=2,
    n_mc=2,
    max_prefix=20,
    limit=6,
    batch_problems=2,
    seed=3,
    progress=False,
)  # three chunks of two problems
EVAL = dict(
    task="arith",
    split="test",
    policy="arith-weak",
    prm="arith-prm",
    n_max=4,
    limit=6,
    batch_problems=2,
    seed=5,
    strategies=["bon", "ias-bon", "sc"],
    progress=False,
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A 2-CPU local cluster whose workers see the fault-injection file's path."""
    fault = tmp_path_factory.mktemp("fault") / "fault"
    saved_env, threads = os.environ.get(FAULT_FILE_ENV), torch.get_num_threads()
    os.environ[FAULT_FILE_ENV] = str(fault)  # before ray.init: the workers inherit it
    torch.set_num_threads(1)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield fault
    ray.shutdown()
    torch.set_num_threads(threads)
    if saved_env is None:
        os.environ.pop(FAULT_FILE_ENV, None)
    else:
        os.environ[FAULT_FILE_ENV] = saved_env


@pytest.fixture(scope="module")
def local_rollouts(tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "r"
    api.rollout(out=out, **ROLLOUT)
    return (out / "rollouts.jsonl").read_bytes()


@pytest.mark.slow
def test_cli_rollout_on_two_workers_survives_a_killed_actor_and_writes_the_local_bytes(
    cluster, local_rollouts, tmp_path, capsys
):
    cluster.write_text("1 1\n")  # the actor that starts shard 1 exits abruptly, once
    out = tmp_path / "r"
    argv = [
        "rollout",
        "--split",
        "calib",
        "--limit",
        "6",
        "--n-traj",
        "2",
        "--n-mc",
        "2",
        "--seed",
        "3",
        "--batch-problems",
        "2",
        "--executor",
        "ray",
        "--workers",
        "2",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    assert "6 problems" in capsys.readouterr().out
    assert cluster.read_text().split() == ["1", "0"]  # it did die, so shard 1 ran again on a fresh actor
    records = read_records(out / "rollouts.jsonl")
    assert len({r["id"] for r in records}) == len(records) == 6  # every problem exactly once
    assert (out / "rollouts.jsonl").read_bytes() == local_rollouts


def test_eval_pool_on_ray_equals_the_local_pool(cluster, tmp_path):
    local = api.evaluate(out=tmp_path / "local", **EVAL)
    remote = api.evaluate(out=tmp_path / "ray", executor="ray", workers=2, **EVAL)
    pool = (tmp_path / "local" / "pool" / "records.jsonl").read_bytes()
    assert len(pool.splitlines()) == 6
    assert (tmp_path / "ray" / "pool" / "records.jsonl").read_bytes() == pool
    assert (tmp_path / "ray" / "records.jsonl").read_bytes() == (tmp_path / "local" / "records.jsonl").read_bytes()
    local_accuracy = {k: v["accuracy"] for k, v in local["methods"].items()}
    assert {k: v["accuracy"] for k, v in remote["methods"].items()} == local_accuracy


def test_a_shard_that_keeps_dying_stops_the_run_and_a_rerun_resumes(cluster, local_rollouts, tmp_path):
    cluster.write_text("1 9\n")  # shard 1 kills every actor that starts it
    task = get_task("arith")
    rest = {k: v for k, v in ROLLOUT.items() if k not in ("task", "n_traj", "n_mc", "max_prefix")}
    settings = RolloutSettings(ROLLOUT["n_traj"], ROLLOUT["n_mc"], ROLLOUT["max_prefix"])
    with pytest.raises(UserError, match=r"^shard 1 .* lost its Ray actor 2 times .* rerun the same command"):
        with RayExecutor(Recipe(TaskSpec("arith"), PolicySpec("arith-weak")), workers=1, max_tries=2) as executor:
            rollout(task, settings=settings, out=tmp_path / "r", executor=executor, params=executor.defaults, **rest)
    assert cluster.read_text().split() == ["1", "7"] and executor.retries == 1
    stored = (tmp_path / "r" / "rollouts.jsonl").read_bytes()
    assert stored == b"".join(local_rollouts.splitlines(keepends=True)[:2])  # shard 0 only: in order, whole
    cluster.unlink()
    api.rollout(out=tmp_path / "r", **ROLLOUT)  # the local path resumes a Ray run's store
    assert (tmp_path / "r" / "rollouts.jsonl").read_bytes() == local_rollouts


def test_an_error_of_the_work_is_raised_as_is_not_retried(cluster, tmp_path):
    with pytest.raises(UserError, match=r"^unknown task 'nope'"):
        with RayExecutor(Recipe(TaskSpec("nope"), PolicySpec("arith-weak")), workers=1):
            pass


def test_executor_settings_are_checked(cluster, tmp_path, capsys):
    assert main(["rollout", "--workers", "2", "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.strip() == "ias: error: --workers and --ray-address need --executor ray"
    with pytest.raises(UserError, match=r"^3 Ray workers x 1 CPU need 3 CPUs, the cluster has 2"):
        api.rollout(out=tmp_path / "r", executor="ray", workers=3, **ROLLOUT)  # would wait forever
    with pytest.raises(UserError, match=r"the cluster has 0; use fewer --workers or a smaller --ray-num-gpus"):
        api.rollout(out=tmp_path / "r", executor="ray", ray_num_gpus=1, **ROLLOUT)


def test_an_address_nobody_answers_is_an_error_now():
    with socket.socket() as probe:  # a loopback port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(UserError, match=rf"^cannot reach the Ray cluster at '127.0.0.1:{port}' .* fix --ray-address"):
        _check_reachable(f"127.0.0.1:{port}")
    _check_reachable("auto")  # left to Ray, which answers quickly for it


def test_without_ray_the_error_names_the_extra(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        sys.modules["ray"] = None  # as if the extra were not installed
        from ias.cli import main
        sys.exit(main(["rollout", "--executor", "ray", "--limit", "2", "--out", {str(tmp_path / "r")!r}]))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "ias: error: --executor ray needs the 'ray' extra: pip install -e '.[ray]' (in the ias clone)"
    )
    assert not (tmp_path / "r").exists()
