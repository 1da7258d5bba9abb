"""`--threads`: torch's CPU threads are set on purpose, since its default collapses on shared cores."""

import os
import subprocess
import sys

import pytest

SHOW = (
    "import sys, torch; from ias import cli; "
    "cli._apply_threads(cli.build_parser().parse_args(sys.argv[1:])); print(torch.get_num_threads())"
)


def threads_after(*args: str, omp: str | None = None) -> int:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if omp:
        env["OMP_NUM_THREADS"] = omp
    done = subprocess.run([sys.executable, "-c", SHOW, *args], capture_output=True, text=True, env=env, check=True)
    return int(done.stdout.strip())


def test_default_is_half_the_cores_at_most_eight():
    cores = len(os.sched_getaffinity(0))
    assert threads_after("eval") == max(1, min(8, cores // 2))


def test_the_option_wins_and_omp_num_threads_is_honoured():
    assert threads_after("demo", "--threads", "3") == 3
    assert threads_after("solve", omp="2") == 2
    assert threads_after("solve", "--threads", "1", omp="2") == 1


@pytest.mark.parametrize("value", ["0", "many"])
def test_a_bad_thread_count_is_one_line(value):
    done = subprocess.run([sys.executable, "-m", "ias.cli", "demo", "--threads", value], capture_output=True, text=True)
    assert done.returncode == 2 and "--threads" in done.stderr and "Traceback" not in done.stderr
