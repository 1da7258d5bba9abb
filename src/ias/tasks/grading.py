"""Safe answer equivalence: `grade_answer(pred, ref)` (a verdict that says when it timed out)
and `answers_match(pred, ref)` (its yes/no).

Three stages:

0. Screening (`ias.tasks.screening`): an answer with control characters, lookalike digits,
   repeated signs, unbalanced or too-deep brackets, a logarithm to base 0 or 1, or a
   `\\overline` / scale word that is not a plain number is not equal, unparsed.
1. A fast path in this process, plain string work only: the answers are equal after
   `normalize_answer`, or both are plain numbers (integers, decimals, `a/b`,
   `\\frac{a}{b}`) and their exact values (`fractions.Fraction`) are compared; when both
   are plain numbers that decides it.
2. Otherwise math-verify (`parse` then `verify` on `$...$`-wrapped strings, newlines and
   `$` signs removed first) decides, in a long-lived helper subprocess. A decimal answer to
   a reference that is not a plain number (`\\pi`, `\\sqrt{2}`) is equal when the two agree
   after rounding to `DECIMAL_PLACES` places (3.14159265 is \\pi; 3.141592 and 3.14 are not).

Why a helper process and not math-verify's own timeout: that timeout is `signal.alarm`,
which only works on the main thread, replaces the caller's own SIGALRM handler (pytest
timeouts, servers), and cannot stop a computation stuck inside C code (big-integer
arithmetic) nor bound its memory. The helper runs each comparison under its own timer of
CPU time (so a loaded machine does not turn a slow comparison into a different verdict), a
CPU-time limit (the kernel kills it if it is stuck in C code past the bound, even if this
process died meanwhile) and an address-space limit; this process waits for the reply at
most `_WALL_FACTOR` x `timeout` (+1 s) of wall time and otherwise kills the helper and
starts a fresh one on the next call. So `answers_match` may be called from any thread, from worker processes
(including daemonic multiprocessing workers: the helper is a plain `subprocess`), and
after `fork` (a child starts its own helpers). Helpers are started on first need (about
a second: they import math-verify), at most `MAX_HELPERS` at once, and exit when this
process exits or closes their pipe.

Limits: an answer longer than `MAX_ANSWER_CHARS` is "not equal" without parsing; a
comparison that times out is "not equal" and its verdict says `timed_out` (callers inside
`recording_timeouts()` also learn which pairs timed out, to mark their records). Results are
cached per (pred, ref, timeout); timeouts are not (a later call tries again).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Final, Literal, NamedTuple

from ias.tasks.answers import normalize_answer, parse_number
from ias.tasks.screening import ascii_math, refusal

logger = logging.getLogger(__name__)

#: Longer answers (either side) are judged not equal without being parsed.
MAX_ANSWER_CHARS = 1000
#: Seconds one math-verify comparison may take before it counts as "not equal".
DEFAULT_TIMEOUT = 5.0
#: A decimal equals a symbolic reference when both agree rounded to this many places.
DECIMAL_PLACES = 6
#: Most helper processes alive at once in one process (concurrent callers wait for one).
MAX_HELPERS = max(1, min(4, os.cpu_count() or 1))
#: Seconds a helper may take to start (import math-verify) before grading gives up.
HELPER_START_TIMEOUT = 120.0
#: Extra address space a helper may use beyond what it holds after start.
HELPER_EXTRA_MEMORY = 4 << 30
#: A marker in the helper's command line, so it can be recognised in a process list.
HELPER_MARKER = "ias-grader-helper"

_REPLY_GRACE = 1.0
#: Wall time this process waits, in multiples of the helper's CPU-time budget: a helper
#: sharing a busy CPU gets only part of it.
_WALL_FACTOR = 3.0


class _TimedOut(Exception):
    """A comparison that did not finish in time: "not equal" now, but never cached."""


class GraderUnavailable(RuntimeError):
    """The math-verify helper process could not be started."""


class Verdict(NamedTuple):
    """A grading verdict: `equal`, and whether the comparison ran out of time (then not equal)."""

    equal: bool
    timed_out: bool = False


def answers_match(pred: str | None, ref: str, *, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Whether the answer `pred` (extracted from a solution; None when there was none)
    equals the reference answer `ref` (see `grade_answer`)."""
    return grade_answer(pred, ref, timeout=timeout).equal


def grade_answer(pred: str | None, ref: str, *, timeout: float = DEFAULT_TIMEOUT) -> Verdict:
    """The verdict on the answer `pred` (None when a solution stated none) against `ref`.

    Safe on untrusted text: nothing is evaluated, input size and time are bounded
    (`MAX_ANSWER_CHARS`, `timeout` seconds), and it may be called from any thread or
    process. A timeout is reported to every `recording_timeouts()` block open in this
    process. Raises `GraderUnavailable` only when the helper process cannot start.
    """
    if pred is None or ref is None:
        return Verdict(False)
    pred, ref = str(pred), str(ref)
    if len(pred) > MAX_ANSWER_CHARS or len(ref) > MAX_ANSWER_CHARS:
        return Verdict(False)  # checked before the cache, which never holds long strings
    try:
        return Verdict(_match_cached(pred, ref, float(timeout)))
    except _TimedOut:
        with _RECORDERS_LOCK:
            for pairs in _RECORDERS:
                pairs[(pred, ref)] += 1
        return Verdict(False, timed_out=True)


@contextmanager
def recording_timeouts() -> Iterator[Counter[tuple[str, str]]]:
    """Counts the gradings that timed out while the block runs (in any thread of this
    process) by (pred, ref) pair, so a caller can mark the records that hold them."""
    pairs: Counter[tuple[str, str]] = Counter()
    with _RECORDERS_LOCK:
        _RECORDERS.append(pairs)
    try:
        yield pairs
    finally:
        with _RECORDERS_LOCK:
            _RECORDERS.remove(pairs)


_RECORDERS: list[Counter[tuple[str, str]]] = []
_RECORDERS_LOCK = threading.Lock()


@lru_cache(maxsize=1 << 16)
def _match_cached(pred: str, ref: str, timeout: float) -> bool:
    if refusal(pred, ref) is not None:
        return False
    pred_n, ref_n = normalize_answer(pred), normalize_answer(ref)
    if not pred_n or not ref_n:
        return False
    if pred_n == ref_n:
        return True
    pred_v, ref_v = parse_number(pred_n), parse_number(ref_n)
    if pred_v is not None and ref_v is not None:
        return pred_v == ref_v
    verdict = _pool().verify(_for_parser(pred), _for_parser(ref), timeout)
    if verdict is None:
        raise _TimedOut  # lru_cache keeps no result for a call that raised
    return verdict


def _for_parser(s: str) -> str:
    """One line without `$`: math-verify reads `$...$` within a line, so a newline or a `$`
    inside an answer would make it read only a part."""
    return " ".join(ascii_math(s).replace("\\$", " ").replace("$", " ").split())


def shutdown_grader() -> None:
    """Stop this process's helper processes now (they restart on the next need)."""
    global _POOL
    with _POOL_LOCK:
        pool, _POOL = _POOL, None
    if pool is not None:
        pool.close()


def helper_pids() -> list[int]:
    """Process ids of this process's live helper processes (for diagnostics and tests)."""
    pool = _POOL
    return pool.pids() if pool is not None and pool.owner == os.getpid() else []


# --- the helper process ------------------------------------------------------------------

# Runs as `python -I -c _HELPER_SOURCE MARKER SYS_PATH_JSON`: self-contained (standard
# library and math-verify only), so starting it never imports this package or torch.
_HELPER_SOURCE = r"""
import json, os, signal, sys
sys.path[:] = json.loads(sys.argv[2])


class Deadline(BaseException):
    pass


def on_alarm(signum, frame):
    raise Deadline()


def set_cpu_limit(resource, seconds):
    soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if seconds is None:
        new = hard
    else:
        used = resource.getrusage(resource.RUSAGE_SELF)
        new = int(used.ru_utime + used.ru_stime + seconds) + 2
        if hard != resource.RLIM_INFINITY:
            new = min(new, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (new, hard))


def main():
    reply = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # whatever a library prints goes to stderr, never into the replies
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import resource
    except ImportError:
        resource = None
    import logging
    logging.disable(logging.CRITICAL)
    from math_verify import parse, verify

    if resource is not None:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        try:
            with open("/proc/self/statm") as f:
                held = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            extra = int(sys.argv[3])
            _, hard = resource.getrlimit(resource.RLIMIT_AS)
            if hard == resource.RLIM_INFINITY or hard > held + extra:
                resource.setrlimit(resource.RLIMIT_AS, (held + extra, hard))
        except (OSError, ValueError):
            pass
    signal.signal(signal.SIGPROF, on_alarm)
    reply.write(b"ready\n")
    for line in sys.stdin.buffer:
        request = json.loads(line)
        timeout = float(request["timeout"])
        ok = False
        try:
            try:
                if resource is not None:
                    set_cpu_limit(resource, timeout)
                signal.setitimer(signal.ITIMER_PROF, timeout)
                gold = parse("$" + request["ref"] + "$", parsing_timeout=None)
                pred = parse("$" + request["pred"] + "$", parsing_timeout=None)
                ok = bool(gold) and bool(pred) and verify(
                    gold, pred, float_rounding=int(request["places"]), timeout_seconds=None
                )
            finally:
                signal.setitimer(signal.ITIMER_PROF, 0)
                if resource is not None:
                    set_cpu_limit(resource, None)
        except Deadline:
            ok = None
        except Exception:
            ok = False
        reply.write(b"%d %d\n" % (request["id"], 2 if ok is None else 1 if ok else 0))


try:
    main()
except (Deadline, KeyboardInterrupt, BrokenPipeError):
    pass
"""


#: A helper's reply when its own timer stopped the comparison (the helper is fine).
TIMED_OUT: Final = "timed out"


class _Helper:
    """One helper process and its pipes."""

    def __init__(self) -> None:
        paths = [p for p in sys.path if p]
        try:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-I",
                    "-c",
                    _HELPER_SOURCE,
                    HELPER_MARKER,
                    json.dumps(paths),
                    str(HELPER_EXTRA_MEMORY),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                close_fds=True,
                start_new_session=True,  # a Ctrl-C at the terminal is the caller's to handle
            )
        except OSError as e:
            raise GraderUnavailable(f"cannot start the answer-grading helper: {e}") from e
        assert self.proc.stdin is not None and self.proc.stdout is not None  # both opened as PIPE above
        self._stdin, self._stdout = self.proc.stdin, self.proc.stdout
        self._buffer = b""
        self._next_id = 0
        self._poll = select.poll()
        self._poll.register(self._stdout.fileno(), select.POLLIN)
        if self._read_line(time.monotonic() + HELPER_START_TIMEOUT) != b"ready":
            self.kill()
            raise GraderUnavailable(
                f"the answer-grading helper did not start (is math-verify importable by {sys.executable}?)"
            )

    def verify(self, pred: str, ref: str, timeout: float) -> bool | Literal["timed out"] | None:
        """True/False, TIMED_OUT when its own timer stopped the comparison, or None when
        the helper did not answer in time or died (then it is replaced)."""
        self._next_id += 1
        request = {"id": self._next_id, "pred": pred, "ref": ref, "timeout": timeout, "places": DECIMAL_PLACES}
        try:
            self._stdin.write(json.dumps(request).encode() + b"\n")
            self._stdin.flush()
        except OSError:
            return None
        line = self._read_line(time.monotonic() + _WALL_FACTOR * timeout + _REPLY_GRACE)
        if line is None:
            return None
        reply_id, _, value = line.partition(b" ")
        if reply_id != str(self._next_id).encode():
            return None
        return TIMED_OUT if value == b"2" else value == b"1"

    def _read_line(self, deadline: float) -> bytes | None:
        fd = self._stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if not self._poll.poll(max(1, int(remaining * 1000))):
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        """Ask the helper to exit (end of input); kill it if it does not."""
        try:
            self._stdin.close()
            self.proc.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()
        self._close_pipes()

    def kill(self) -> None:
        try:
            self.proc.kill()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a kill that did not take
            logger.warning("grading helper %d did not exit after SIGKILL", self.proc.pid)
        self._close_pipes()

    def drop_in_fork_child(self) -> None:
        """In a forked child: forget the parent's helper without touching it."""
        self._close_pipes()
        self.proc.returncode = 0  # so Popen.__del__ does not track the parent's child

    def _close_pipes(self) -> None:
        for pipe in (self._stdin, self._stdout):
            try:
                pipe.close()
            except OSError:
                pass


class _HelperPool:
    """Up to `size` helpers shared by this process's threads."""

    def __init__(self, size: int) -> None:
        self.owner = os.getpid()
        self._size = size
        self._cond = threading.Condition()
        self._idle: list[_Helper] = []
        self._busy: set[_Helper] = set()
        self._starting = 0
        self._closed = False

    def verify(self, pred: str, ref: str, timeout: float) -> bool | None:
        """The verdict, or None when the comparison did not finish in time."""
        helper = self._acquire()
        result = None
        try:
            result = helper.verify(pred, ref, timeout)
        finally:
            self._release(helper, healthy=result is not None)
        if result is None or result == TIMED_OUT:
            logger.warning("answer check timed out after %.1fs; counted as not equal", timeout)
            return None
        return result

    def _acquire(self) -> _Helper:
        with self._cond:
            while not self._idle and len(self._busy) + self._starting >= self._size:
                self._cond.wait()
            if self._idle:
                helper = self._idle.pop()
                self._busy.add(helper)
                return helper
            self._starting += 1
        try:
            helper = _Helper()
        except BaseException:
            with self._cond:
                self._starting -= 1
                self._cond.notify()
            raise
        with self._cond:
            self._starting -= 1
            self._busy.add(helper)
        return helper

    def _release(self, helper: _Helper, healthy: bool) -> None:
        keep = healthy and helper.alive()
        if not keep:
            helper.kill()
        with self._cond:
            self._busy.discard(helper)
            if keep and not self._closed:
                self._idle.append(helper)
                keep = False
            self._cond.notify()
        if keep:  # the pool was closed while this helper was in use
            helper.close()

    def pids(self) -> list[int]:
        with self._cond:
            return [h.proc.pid for h in [*self._idle, *self._busy] if h.alive()]

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            busy = list(self._busy)
        for helper in idle:
            helper.close()
        for helper in busy:  # their callers see it die, count "not equal" and reap it
            try:
                helper.proc.kill()
            except OSError:
                pass

    def drop_in_fork_child(self) -> None:
        for helper in [*self._idle, *self._busy]:
            helper.drop_in_fork_child()


_POOL: _HelperPool | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> _HelperPool:
    global _POOL
    pool = _POOL
    if pool is not None and pool.owner == os.getpid():
        return pool
    with _POOL_LOCK:
        if _POOL is None or _POOL.owner != os.getpid():
            _POOL = _HelperPool(MAX_HELPERS)
        return _POOL


def _after_fork_in_child() -> None:
    global _POOL, _POOL_LOCK, _RECORDERS_LOCK
    _POOL_LOCK = threading.Lock()
    _RECORDERS_LOCK = threading.Lock()  # another thread may have held it at the fork
    pool, _POOL = _POOL, None
    if pool is not None:
        pool.drop_in_fork_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(shutdown_grader)
