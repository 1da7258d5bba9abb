"""Answer equivalence: fast path, math-verify in its helper, bounds, threads and processes."""

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from ias.tasks.grading import MAX_ANSWER_CHARS, answers_match, helper_pids, shutdown_grader

EQUAL = [
    (r"\frac{1}{2}", "0.5"),
    (r"\dfrac12", r"\frac{1}{2}"),
    (r"\tfrac{3}{4}", "0.75"),
    ("2/4", "1/2"),
    ("-0.25", r"-\frac{1}{4}"),
    ("1,000", "1000"),
    (r"\$18.00", "18"),
    (r"90^\circ", "90"),
    (r"5\text{ cm}", "5"),
    (r"\sqrt{8}", r"2\sqrt{2}"),
    (r"\frac{\pi}{2}", r"\pi/2"),
    (r"\left( 3, \frac{\pi}{2} \right)", r"(3,\frac{\pi}{2})"),
    (r"\{1,2\}", r"\{2,1\}"),
    ("x+1", "1+x"),
    ("(x+1)^2", "x^2+2x+1"),
    ("3+2i", "2i+3"),
    (r"\text{Evelyn}", "Evelyn"),
]

NOT_EQUAL = [
    ("1", "2"),
    ("5", "-5"),
    ("0.3333", r"\frac{1}{3}"),  # plain numbers compare exactly
    ("(1,2)", "(2,1)"),
    ("x+1", "x+2"),
    (r"\sqrt{3}", "1.732"),
    ("1,2", "12"),
    ("", ""),
    (None, "1"),
]


@pytest.mark.parametrize("pred, ref", EQUAL)
def test_equal(pred, ref):
    assert answers_match(pred, ref)


@pytest.mark.parametrize("pred, ref", NOT_EQUAL)
def test_not_equal(pred, ref):
    assert not answers_match(pred, ref)


def test_oversized_input_is_not_parsed():
    long = "1" * (MAX_ANSWER_CHARS + 1)
    assert not answers_match(long, long)
    assert not answers_match("1", "+" * (MAX_ANSWER_CHARS + 1))


def _alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def test_pathological_input_returns_within_the_bound():
    answers_match("y+1", "1+y")  # the helper is started outside the timed part
    start = time.monotonic()
    assert not answers_match(r"\binom{10^{9}}{10^{8}}", "2", timeout=1)
    assert not answers_match(r"(10^{9})! - 9^{9^{9}}", "7", timeout=1)
    assert time.monotonic() - start < 2 * (1 + 1) + 2  # per call: timeout + reply grace
    assert answers_match("a+2", "2+a")  # the grader still works afterwards


def test_grading_from_worker_threads():
    pairs = [(f"{k}+z", f"z+{k}") for k in range(8)] + [(f"{k}/2", f"{k / 2}") for k in range(8)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert all(pool.map(lambda pair: answers_match(*pair), pairs))
    results = []
    thread = threading.Thread(target=lambda: results.append(answers_match(r"\sqrt{12}", r"2\sqrt{3}")))
    thread.start()
    thread.join()
    assert results == [True]


def test_grading_inside_spawned_worker_process():
    pairs = [(r"\sqrt{18}", r"3\sqrt{2}"), ("x", "y"), (r"\frac{1}{2}", "0.5")]
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.starmap(answers_match, pairs) == [True, False, True]


def _grade_then_pids(pred, ref):
    return answers_match(pred, ref), helper_pids()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_grading_inside_daemonic_forked_workers_leaks_no_helper():
    assert answers_match("w+3", "3+w")  # a helper exists before the fork
    before = helper_pids()
    pairs = [(rf"\sqrt{{{4 * k}}}", rf"2\sqrt{{{k}}}") for k in (2, 3, 5, 6)]
    pool = multiprocessing.get_context("fork").Pool(2)  # daemonic workers
    try:
        results = pool.starmap(_grade_then_pids, pairs)
    finally:
        pool.close()
        pool.join()
    assert [ok for ok, _ in results] == [True] * 4
    child_helpers = {pid for _, pids in results for pid in pids}
    assert child_helpers and not child_helpers & set(before)  # the children used their own
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in child_helpers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in child_helpers)  # they exit with their worker
    assert set(before) <= set(helper_pids())
    assert answers_match("w+4", "4+w")  # the parent's helpers still answer


def test_callers_alarm_is_left_alone():
    fired = []

    def handler(*_):
        fired.append(1)

    previous = signal.signal(signal.SIGALRM, handler)
    try:
        signal.alarm(100)
        assert answers_match("q*2", "2*q")
        assert signal.getsignal(signal.SIGALRM) is handler
        assert signal.alarm(0) > 90  # our alarm is still pending, not cancelled
        assert not fired
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_hung_helper_is_killed_and_replaced():
    answers_match("u+1", "1+u")
    stopped = helper_pids()
    assert stopped
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)  # a helper that never answers
    try:
        start = time.monotonic()
        assert not answers_match("u+2", "2+u", timeout=0.5)
        assert time.monotonic() - start < 0.5 + 1 + 2
    finally:
        for pid in stopped:
            if _alive(pid):
                os.kill(pid, signal.SIGCONT)
    killed = [pid for pid in stopped if pid not in helper_pids()]
    assert killed and not any(_alive(pid) for pid in killed)  # killed and reaped, no zombie
    assert answers_match("u+3", "3+u")  # a fresh or remaining helper answers
    assert answers_match("u+2", "2+u", timeout=0.5)  # a timeout was not cached as "not equal"


def test_shutdown_stops_helpers():
    answers_match("v+1", "1+v")
    pids = helper_pids()
    assert pids
    shutdown_grader()
    assert helper_pids() == []
    assert not any(_alive(pid) for pid in pids)
    assert answers_match("v+2", "2+v")  # started again on need
